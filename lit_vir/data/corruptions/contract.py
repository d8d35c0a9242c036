"""What every corruption promises, in one place.

A corruption is a pure function `corruption(images, severity, generator)` over a batch
`images: (B, C, H, W)` of floats in [0, 1], C = 1 or 3, any H and W. It returns the same shape, dtype
and device, clipped to [0, 1], and draws all its randomness from `generator` (same seed → same output).
Severities run from 1 (mildest) to 5. The constants are the CIFAR-10 ones of the published generation
script, given for a 32-pixel side; lengths in pixels scale with the image side (`pixel_scale`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import torch
from torch import Tensor

from lit_vir.checks import check_range

__all__ = ["REFERENCE_SIDE", "SEVERITIES", "Corruption", "at_severity", "corruption", "pixel_scale"]

SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIDE = 32  # CIFAR's side, for which the published constants are given

Constant = TypeVar("Constant")


class Corruption(Protocol):
    def __call__(self, images: Tensor, severity: int, generator: torch.Generator) -> Tensor: ...


def at_severity(constants: Sequence[Constant], severity: int) -> Constant:
    """The entry of a per-severity table (severity 1 is the first), refusing severities outside 1..5."""
    check_range(
        "corruption", "severity", severity, low=SEVERITIES[0], high=SEVERITIES[-1], hint="1 is mildest, 5 strongest."
    )
    return constants[severity - 1]


def pixel_scale(images: Tensor) -> float:
    """side / 32: the factor that turns a published length in pixels into one for these images, so a
    28×28 or 8×8 image is blurred or displaced by the same fraction of its field of view as CIFAR's 32×32."""
    return min(images.shape[-2:]) / REFERENCE_SIDE


def corruption(function: Callable[[Tensor, int, torch.Generator], Tensor]) -> Corruption:
    """Give `function` the contract: it sees float32 or float64 images (half precision lacks some of
    the ops used), and its result is clipped to [0, 1] and returned in the input's dtype."""

    @functools.wraps(function)
    def corrupted(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
        working = images if images.dtype in (torch.float32, torch.float64) else images.float()
        return function(working, severity, generator).clamp(0, 1).to(images.dtype)

    return corrupted
