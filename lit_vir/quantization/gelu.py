"""OPT-m (MPTQ-ViT, Tai & Wu 2024): post-GELU activations on two scales whose ratio is 2^m.

GELU's output is lopsided: a long positive tail and a short negative part (GELU ≥ −0.17). One step Δ wide
enough for the tail rounds nearly every negative value to 0 or −Δ. OPT-m gives the negative codes the finer
step Δ/2^m — a power-of-two ratio, a shift in integer hardware — with b bits shared as one signed grid:

    x ≥ 0:  clamp(⌊x/Δ⌉, 0, 2^(b−1) − 1)·Δ          x < 0:  clamp(⌊x·2^m/Δ⌉, −2^(b−1), 0)·Δ/2^m

Δ is the single-scale symmetric grid fitted as for any activation; then m ∈ {0, …, max_m} is searched per
layer on the calibration rows to minimise the error of the layer the GELU feeds (FC2), ‖(Q(X) − X)·Wᵀ‖².
m = 0 is exactly the single-scale quantiser and is a candidate, so the searched m is never worse than it
on the calibration data (ties keep the smaller m).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lit_vir.quantization.quantizers import ActivationQuantizer, fake_quantize, output_error, signed_levels

__all__ = ["TwinGrid", "TwinScaleQuantizer", "twin_quantize"]


def twin_quantize(values: torch.Tensor, scale: float, m: int, bits: int) -> torch.Tensor:
    """b-bit fake quantisation with step Δ = `scale` for x ≥ 0 and Δ/2^m for x < 0."""
    low, high = signed_levels(bits)
    positive = fake_quantize(values, scale, 0, 0, high)
    negative = fake_quantize(values, scale / 2**m, 0, low, 0)
    return torch.where(values >= 0, positive, negative)


@dataclass(frozen=True)
class TwinGrid:
    """One fitted OPT-m grid: positive step `scale`, negative step scale/2^m."""

    scale: float
    m: int
    bits: int

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        return twin_quantize(values, self.scale, self.m, self.bits)


class TwinScaleQuantizer(ActivationQuantizer):
    """The post-GELU site's quantiser: the symmetric grid's Δ, plus the searched exponent m."""

    def __init__(self, max_m: int = 8, max_values: int = 2**20, seed: int = 0) -> None:
        super().__init__("symmetric", max_values, seed)
        self.max_m = max_m

    @property
    def parameter_count(self) -> int:
        return 0 if self.bits is None else 2  # Δ and m

    def fit(self, bits: int, weight: torch.Tensor | None) -> TwinGrid:
        rows = self.calibration_rows()
        single = super().fit(bits, weight)  # the m = 0 grid
        grids = [TwinGrid(single.scale, m, bits) for m in range(self.max_m + 1)]
        return min(grids, key=lambda grid: output_error(grid(rows), rows, weight))

    def extra_repr(self) -> str:
        chosen = self.fitted.get(self.bits) if self.bits is not None else None
        return f"bits={self.bits}" + (f", m={chosen.m}" if chosen is not None else "")
