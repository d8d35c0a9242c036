"""Quantisers for the softmax output P = softmax(q·kᵀ/√d), the left input of attention·V.

P lies in [0, 1], each row sums to 1, and most entries are tiny: with T keys a row averages 1/T, and a
few keys hold most of the mass. One uniform grid over [0, max P] rounds nearly every small entry to 0 —
issue 16 measured on a small ViT at 4 bits that 59–83% of the weights became exactly 0 and some rows kept
about half their mass — so this site gets a quantiser made for that distribution:

- `two_scale` (the default), TSPTQ-ViT's value-aware two-scaled factors (V-2SF, Tai et al. 2023, the base
  MPTQ-ViT builds on): b bits as one region bit and b − 1 bits of code, a fine step Δ/2^m for the small
  values and Δ for the large ones,

      P̂ = the nearer of  clamp(⌊P·2^m/Δ⌉, 0, 2^(b−1) − 1)·Δ/2^m  and  clamp(⌊P/Δ⌉, 0, 2^(b−1) − 1)·Δ

  (at most 2^b levels; the ratio 2^m is a shift in integer hardware). Δ (a fraction of the observed
  maximum, as for every grid here) and m ∈ {1, …, max_m} are searched together per layer on the
  calibration rows for the least squared error of P̂ — the same data-driven 2^m ratio search as OPT-m
  for post-GELU values (`gelu.py`), so one mechanism serves both non-normal sites.
- `log2`, FQ-ViT's log2 quantiser (Lin et al. 2022): P̂ = 2^−k, k = clamp(⌊−log₂ P⌉, 0, 2^b − 1); no
  parameters, the same relative precision (within a factor √2) at every scale down to 2^−(2^b−1), but
  only the levels 1 and ½ above 0.35.
- `uniform`: one asymmetric grid, codes [0, 2^b − 1] (the single-scale baseline; an ablation).

Why `two_scale` by default: it is the paper's own quantiser family (the same 2^m mechanism as OPT-m),
and it keeps a uniform step where a row's mass is (the large entries, which decide attention·V). On peaked
synthetic rows at 4 bits it zeroes fewer weights, keeps more of each row and passes A·V with less error
than `uniform` and `log2` (tested). On a small trained ViT (`docs/quantization.md`, `lit-vir quantize
--variants mptq log2_softmax uniform_softmax`) it was the most accurate at 8 and 6 bits, while `log2` was
0.7 points better at 4 bits; the command reports both, and per row how many weights became 0 and how much
mass was kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from lit_vir.checks import check_choice
from lit_vir.quantization.quantizers import (
    CLIP_RATIOS,
    SMALLEST_SCALE,
    ActivationQuantizer,
    fake_quantize,
    output_error,
)

__all__ = [
    "SOFTMAX_QUANTIZERS",
    "Log2Quantizer",
    "SoftmaxKind",
    "SoftmaxStatistics",
    "TwoScaleSoftmaxQuantizer",
    "log2_quantize",
    "softmax_quantizer",
    "softmax_statistics",
    "two_scale_quantize",
]

SoftmaxKind = Literal["two_scale", "log2", "uniform"]
SOFTMAX_QUANTIZERS = ("two_scale", "log2", "uniform")


def two_scale_quantize(values: torch.Tensor, scale: float, m: int, bits: int) -> torch.Tensor:
    """Non-negative values on two b−1-bit grids, steps Δ/2^m and Δ = `scale`, each to its nearer level."""
    top = 2 ** (bits - 1) - 1
    fine = fake_quantize(values, scale / 2**m, 0, 0, top)
    coarse = fake_quantize(values, scale, 0, 0, top)
    return torch.where((fine - values).abs() <= (coarse - values).abs(), fine, coarse)


def log2_quantize(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Values in [0, 1] to 2^−k, k = clamp(⌊−log₂ x⌉, 0, 2^b − 1) (0 goes to the smallest level)."""
    return torch.exp2(-torch.clamp(torch.round(-torch.log2(values)), 0, 2**bits - 1))


@dataclass(frozen=True)
class TwoScaleGrid:
    """One fitted V-2SF grid: coarse step `scale`, fine step scale/2^m, `bits` in all."""

    scale: float
    m: int
    bits: int

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        return two_scale_quantize(values, self.scale, self.m, self.bits)


@dataclass(frozen=True)
class Log2Grid:
    bits: int

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        return log2_quantize(values, self.bits)


class TwoScaleSoftmaxQuantizer(ActivationQuantizer):
    """The softmax output's V-2SF quantiser: Δ and m searched together on the calibration rows."""

    def __init__(self, max_m: int = 8, max_values: int = 2**20, seed: int = 0) -> None:
        super().__init__("asymmetric", max_values, seed)
        self.max_m = max_m

    @property
    def parameter_count(self) -> int:
        return 0 if self.bits is None else 2  # Δ and m

    def fit(self, bits: int, weight: torch.Tensor | None) -> TwoScaleGrid:
        rows = self.calibration_rows()  # (R, keys)
        top = 2 ** (bits - 1) - 1
        largest = max(float(rows.max()), SMALLEST_SCALE)
        grids = [
            TwoScaleGrid(max(ratio * largest / top, SMALLEST_SCALE), m, bits)
            for ratio in CLIP_RATIOS
            for m in range(1, self.max_m + 1)
        ]
        return min(grids, key=lambda grid: output_error(grid(rows), rows))

    def extra_repr(self) -> str:
        chosen = self.fitted.get(self.bits) if self.bits is not None else None
        return f"bits={self.bits}" + (f", m={chosen.m}" if chosen is not None else "")


class Log2Quantizer(ActivationQuantizer):
    """The parameter-free log2 quantiser of values in [0, 1] (calibration only records the rows)."""

    def __init__(self, max_values: int = 2**20, seed: int = 0) -> None:
        super().__init__("asymmetric", max_values, seed)

    @property
    def parameter_count(self) -> int:
        return 0

    def fit(self, bits: int, weight: torch.Tensor | None) -> Log2Grid:
        return Log2Grid(bits)

    def extra_repr(self) -> str:
        return f"log2, bits={self.bits}"


def softmax_quantizer(kind: SoftmaxKind) -> ActivationQuantizer:
    """A fresh quantiser of the given kind for one attention's softmax output."""
    check_choice("softmax quantizer", "kind", kind, SOFTMAX_QUANTIZERS)
    if kind == "two_scale":
        return TwoScaleSoftmaxQuantizer()
    return Log2Quantizer() if kind == "log2" else ActivationQuantizer("asymmetric")


@dataclass(frozen=True)
class SoftmaxStatistics:
    """What a softmax quantiser does to its calibration rows: the fraction of positive weights it rounds to
    exactly 0, and the fraction of each row's mass Σ_j P̂_ij / Σ_j P_ij it keeps (the smallest over the
    rows, and the mean)."""

    zeroed: float
    min_row_mass: float
    mean_row_mass: float


@torch.no_grad()
def softmax_statistics(quantizer: ActivationQuantizer) -> SoftmaxStatistics:
    """`SoftmaxStatistics` of a calibrated softmax-output quantiser at its current width."""
    rows = quantizer.calibration_rows()  # (R, keys)
    quantized = quantizer(rows)
    positive = rows > 0
    mass = quantized.sum(dim=-1) / rows.sum(dim=-1)  # (R,)
    zeroed = (positive & (quantized == 0)).sum() / positive.sum().clamp(min=1)
    return SoftmaxStatistics(float(zeroed), float(mass.min()), float(mass.mean()))
