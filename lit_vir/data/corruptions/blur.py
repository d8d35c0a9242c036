"""Blur: defocus_blur, glass_blur, motion_blur, zoom_blur (benchmark) and gaussian_blur (extra), after
the published recipe (Hendrycks & Dietterich 2019, `make_cifar_c.py`). Blur radii are given for a
32-pixel side and scale with the image side (`pixel_scale`); at 32×32 they are the published ones."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_vir.data.corruptions import filters
from lit_vir.data.corruptions.contract import at_severity, corruption, pixel_scale
from lit_vir.data.corruptions.sampling import integers, uniform

__all__ = ["defocus_blur", "gaussian_blur", "glass_blur", "motion_blur", "zoom_blur"]

DEFOCUS_BLUR = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))  # (disk radius r, alias σ_a)
GLASS_BLUR = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))  # (σ, reach δ, sweeps)
MOTION_BLUR = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))  # (radius R, sigma S)
MOTION_BLUR_ANGLES = (-45.0, 45.0)  # degrees, uniform per image
ZOOM_BLUR_MAX = (1.05, 1.10, 1.15, 1.20, 1.25)  # largest zoom factor
ZOOM_BLUR_STEP = 0.01
GAUSSIAN_BLUR_STD = (0.4, 0.6, 0.7, 0.8, 1.0)  # σ


@corruption
def defocus_blur(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Convolution with an anti-aliased disk (radius r, kernel blurred with σ_a): an out-of-focus lens."""
    radius, alias_blur = at_severity(DEFOCUS_BLUR, severity)
    scale = pixel_scale(images)
    return filters.convolve(images, filters.disk_kernel(radius * scale, alias_blur * scale))


@corruption
def glass_blur(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Frosted glass: Gaussian blur σ, `sweeps` passes of local pixel jitter (`jitter_pixels`), blur σ
    again. Deviation: the published script rounds to uint8 between the steps; this does not."""
    sigma, reach, sweeps = at_severity(GLASS_BLUR, severity)
    sigma *= pixel_scale(images)
    jittered = filters.gaussian_filter(images, sigma)
    for _ in range(sweeps):
        jittered = jitter_pixels(jittered, reach, generator)
    return filters.gaussian_filter(jittered, sigma)


def jitter_pixels(images: Tensor, reach: int, generator: torch.Generator) -> Tensor:
    """One sweep of the published "local shuffle", vectorised.

    The published script visits rows and columns side − δ … δ + 1 (bottom-right first) and runs
    `x[h, w], x[h', w'] = x[h', w'], x[h, w]` with (h', w') = (h, w) + (dy, dx), dy, dx from numpy's
    `randint(−δ, δ)` — upper bound excluded, so only up or left. On numpy views that tuple assignment
    copies x[h', w'] into x[h, w] and leaves x[h', w'] as it was (it is not a swap), and with δ = 1 (every
    published severity) the source is always still unvisited, so each visited pixel simply takes the
    value of itself or of its upper, left or upper-left neighbour, independently. That is what this does,
    per image, for any δ; for δ > 1 the published sweep could chain copies, this does not.
    """
    batch, _, height, width = images.shape
    offsets = integers(-reach, reach, (2, batch, height, width), generator, images)  # (dy, dx)
    rows = torch.arange(height, device=images.device)[:, None]
    columns = torch.arange(width, device=images.device)[None, :]
    visited = (rows > reach) & (rows <= height - reach) & (columns > reach) & (columns <= width - reach)
    return filters.gather_pixels(images, rows + offsets[0] * visited, columns + offsets[1] * visited)


@corruption
def motion_blur(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Linear motion blur (ImageMagick's, see `filters.motion_blur`), radius R and sigma S, at a random
    angle in [−45°, 45°] per image: camera shake."""
    radius, sigma = at_severity(MOTION_BLUR, severity)
    scale = pixel_scale(images)
    angles = uniform((images.shape[0],), generator, images, *MOTION_BLUR_ANGLES)
    return filters.motion_blur(images, radius * scale, sigma * scale, angles)


@corruption
def zoom_blur(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """The mean of x and its centre zooms by 1, 1.01, … z_max: a camera moving towards the scene.
    Zoom factors are relative, so they need no scaling with the image side. The factors are the spec's
    (shared/spec/corruptions.md); the published script's `np.arange(1, 1.06, 0.01)` and `np.arange(1, 1.11,
    0.01)` also hold 1.06 and 1.11 by float rounding, one zoom more at severities 1 and 2."""
    largest = at_severity(ZOOM_BLUR_MAX, severity)
    factors = [1 + ZOOM_BLUR_STEP * step for step in range(round((largest - 1) / ZOOM_BLUR_STEP) + 1)]
    total = images.clone()
    for factor in factors:
        total += filters.zoom(images, factor)
    return total / (len(factors) + 1)


@corruption
def gaussian_blur(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Gaussian blur σ (skimage `gaussian`; deviation: reflected rather than repeated edges)."""
    sigma = at_severity(GAUSSIAN_BLUR_STD, severity)
    return filters.gaussian_filter(images, sigma * pixel_scale(images))
