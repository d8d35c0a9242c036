"""Random draws from one `torch.Generator`, delivered on the images' device and dtype.

Drawing on the generator's own device and moving the result makes a CPU generator serve CUDA images:
the numbers, and so the corruption, are the same on every device.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["integers", "normal", "poisson", "uniform"]


def uniform(
    shape: tuple[int, ...], generator: torch.Generator, like: Tensor, low: float = 0.0, high: float = 1.0
) -> Tensor:
    draws = torch.rand(shape, generator=generator, device=generator.device, dtype=like.dtype)
    return (low + (high - low) * draws).to(like.device)


def normal(
    shape: tuple[int, ...], generator: torch.Generator, like: Tensor, mean: float = 0.0, std: float = 1.0
) -> Tensor:
    draws = torch.randn(shape, generator=generator, device=generator.device, dtype=like.dtype)
    return (mean + std * draws).to(like.device)


def integers(low: int, high: int, shape: tuple[int, ...], generator: torch.Generator, like: Tensor) -> Tensor:
    """Integers in [low, high) — high excluded, as numpy's `randint` that the published script uses."""
    draws = torch.randint(low, high, shape, generator=generator, device=generator.device)
    return draws.to(like.device)


def poisson(rates: Tensor, generator: torch.Generator) -> Tensor:
    return torch.poisson(rates.to(generator.device), generator=generator).to(rates.device)
