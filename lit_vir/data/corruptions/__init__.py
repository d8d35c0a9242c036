"""The 19 common corruptions of CIFAR-10-C as batched, seeded torch functions.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and Perturbations"
(ICLR 2019), with the CIFAR-10 constants of the authors' generation script (`make_cifar_c.py`); the
table of constants is shared/spec/corruptions.md. Each corruption is a pure function

    corruption(images: (B, C, H, W) float in [0, 1], severity: 1..5, generator: torch.Generator)
        -> (B, C, H, W), same dtype and device, in [0, 1]

that draws all its randomness from `generator`, so one seed gives one output on any device (contract.py).
`corrupt(images, name, severity, generator)` looks a name up in `CORRUPTIONS` and checks its arguments.

Families: noise.py, blur.py, weather.py (incl. brightness, as the paper groups it), digital.py; the
shared helpers are filters.py (Gaussian, disk and motion kernels, zoom, box resize), colour.py (HSV),
textures.py (plasma fractal, frost) and sampling.py (draws from the generator).

Where this deviates from the published recipe (details in each docstring):
- Every image size works: lengths in pixels (blur radii, elastic and snow constants) are the published
  ones for a 32-pixel side, times side/32. At 32×32 the constants are exactly the published ones.
- 1-channel images: colour operations (brightness, saturate, the colours of frost and spatter) act on
  the grey RGB image (x, x, x) and return its luma (colour.py).
- frost: a procedural frost texture replaces the six photographs the original crops. Say so wherever
  frost numbers are reported.
- spatter: the water shading (Canny edge distance, equalised and embossed) is approximated by an
  embossed blurred puddle mask; mud follows the recipe.
- glass_blur's "local shuffle" reproduces what the published code does (copies from up/left
  neighbours), not a true swap; no uint8 rounding between steps, here or elsewhere (except JPEG).
- Resampling: zoom and elastic use grid_sample (bilinear), so sub-pixel alignment and edges differ
  slightly from scipy/cv2; elastic resamples once instead of twice; Gaussian blurs reflect at the edges.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_vir.checks import check_choice, check_range
from lit_vir.data.corruptions.blur import defocus_blur, gaussian_blur, glass_blur, motion_blur, zoom_blur
from lit_vir.data.corruptions.contract import SEVERITIES, Corruption
from lit_vir.data.corruptions.digital import contrast, elastic_transform, jpeg_compression, pixelate, saturate
from lit_vir.data.corruptions.noise import gaussian_noise, impulse_noise, shot_noise, speckle_noise
from lit_vir.data.corruptions.weather import brightness, fog, frost, snow, spatter

__all__ = [
    "BENCHMARK_CORRUPTIONS",
    "CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "SEVERITIES",
    "Corruption",
    "corrupt",
]

CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
    "speckle_noise": speckle_noise,
    "gaussian_blur": gaussian_blur,
    "spatter": spatter,
    "saturate": saturate,
}
# The 15 of the benchmark in the published order (mean corruption error); the 4 extras are reported apart.
BENCHMARK_CORRUPTIONS: tuple[str, ...] = tuple(CORRUPTIONS)[:15]
EXTRA_CORRUPTIONS: tuple[str, ...] = tuple(CORRUPTIONS)[15:]
CHANNELS = (1, 3)


def corrupt(images: Tensor, name: str, severity: int, generator: torch.Generator) -> Tensor:
    """`images` (B, C, H, W) float in [0, 1], C = 1 or 3, corrupted by `name` at `severity` 1..5."""
    check_choice("corrupt", "name", name, CORRUPTIONS)
    check_range("corrupt", "severity", severity, low=SEVERITIES[0], high=SEVERITIES[-1], hint="1 is mildest.")
    if images.ndim != 4 or images.shape[1] not in CHANNELS or not images.is_floating_point():
        raise ValueError(
            f"corrupt: images must be a float batch (B, C, H, W) with C in {CHANNELS}; "
            f"got {images.dtype} {tuple(images.shape)}."
        )
    return CORRUPTIONS[name](images, severity, generator)
