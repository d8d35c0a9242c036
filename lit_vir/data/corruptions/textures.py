"""Random textures, one per image: the plasma fractal behind fog, and the procedural frost that stands
in for the published frost photographs."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_vir.data.corruptions.contract import REFERENCE_SIDE
from lit_vir.data.corruptions.filters import motion_blur
from lit_vir.data.corruptions.sampling import uniform

__all__ = ["frost_texture", "plasma_fractal"]

PLASMA_START = 100.0  # the published `wibble`: the first displacement scale
FROST_RIME_DECAY = 1.5  # rougher than any fog: fine-grained, like rime
FROST_NEEDLE_DENSITY = 0.04  # fraction of pixels that seed an ice needle
FROST_NEEDLE_LENGTH = 4.0  # needle radius R and sigma S (ImageMagick's), in pixels at side 32
FROST_NEEDLE_SIGMA = 2.0
FROST_NEEDLE_DIRECTIONS = 2  # needle layers, each at its own random angle per image


def next_power_of_two(size: int) -> int:
    return 1 << max(0, size - 1).bit_length()


def plasma_fractal(count: int, size: int, decay: float, generator: torch.Generator, like: Tensor) -> Tensor:
    """(count, 1, size, size) diamond–square height maps in [0, 1], `size` a power of two, as the
    published `plasma_fractal`: each midpoint is the mean of its four neighbours (wrapping around) plus
    w·U(−w, w), and w is divided by `decay` per octave — a larger decay gives a smoother map."""
    maps = torch.zeros(count, size, size, device=like.device, dtype=like.dtype)
    step, wibble = size, PLASMA_START

    def displaced(total: Tensor) -> Tensor:
        return total / 4 + wibble * uniform(tuple(total.shape), generator, like, -wibble, wibble)

    while step >= 2:
        half = step // 2
        corners = maps[:, ::step, ::step]
        squares = corners + corners.roll(-1, dims=1)
        maps[:, half::step, half::step] = displaced(squares + squares.roll(-1, dims=2))
        centres = maps[:, half::step, half::step]
        maps[:, ::step, half::step] = displaced(centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2))
        maps[:, half::step, ::step] = displaced(centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1))
        step, wibble = half, wibble / decay
    low = maps.amin(dim=(1, 2), keepdim=True)
    high = maps.amax(dim=(1, 2), keepdim=True)
    return ((maps - low) / (high - low).clamp_min(torch.finfo(like.dtype).tiny))[:, None]


def frost_texture(count: int, height: int, width: int, generator: torch.Generator, like: Tensor) -> Tensor:
    """(count, 1, height, width) procedural frost in [0, 1].

    Deviation: the published frost crops one of six photographs of frost, which are not available here.
    This texture imitates them: rime (a rough plasma fractal, decay 1.5) plus ice needles (sparse seed
    pixels streaked by motion blur in two random directions per image), normalised to peak at 1.
    """
    side = next_power_of_two(max(height, width))
    rime = plasma_fractal(count, side, FROST_RIME_DECAY, generator, like)[..., :height, :width]
    scale = min(height, width) / REFERENCE_SIDE
    needles = torch.zeros_like(rime)
    for _ in range(FROST_NEEDLE_DIRECTIONS):
        seeds = (uniform((count, 1, height, width), generator, like) < FROST_NEEDLE_DENSITY).to(like.dtype)
        angles = uniform((count,), generator, like, 0.0, 360.0)
        needles += motion_blur(seeds, FROST_NEEDLE_LENGTH * scale, FROST_NEEDLE_SIGMA * scale, angles)
    texture = rime + needles / needles.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    return texture / texture.amax(dim=(1, 2, 3), keepdim=True)
