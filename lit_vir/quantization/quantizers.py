"""Uniform fake quantisers: per-channel symmetric weights, per-tensor activations with calibrated grids.

Fake quantisation rounds a float tensor onto an integer grid and maps it back, x ↦ (clamp(⌊x/Δ⌉ + z) − z)·Δ,
so a float model computes what the integer model would, and accuracy can be measured without integer
kernels (the setting of MPTQ-ViT, Tai & Wu 2024, and of SmoothQuant, Xiao et al. 2023).

- Weights: one scale per output channel, Δ_c = max|W_c| / (2^(b−1) − 1), no clipping, so every weight
  lies on the grid's range and rounds by at most Δ_c / 2.
- Activations: one grid per tensor, fitted after calibration for each bit width b: `symmetric` (signed
  codes, zero point 0: what an integer matrix product takes directly; SQ-b makes LayerNorm outputs fit it)
  or `asymmetric` (codes [0, 2^b − 1] with a zero point: for values known to be non-negative, such as
  softmax outputs). The clipping range is searched over fractions of the observed range, keeping the grid
  that minimises the error of the consuming layer's output ‖(Q(X) − X)·Wᵀ‖² (the tensor's own squared
  error where no weight consumes it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lit_vir.checks import check_choice
from lit_vir.quantization.observers import RowSample

__all__ = [
    "CLIP_RATIOS",
    "ActivationQuantizer",
    "SegmentedQuantizer",
    "UniformGrid",
    "fake_quantize",
    "output_error",
    "quantize_weight",
    "signed_levels",
    "weight_scales",
]

Kind = Literal["symmetric", "asymmetric"]
CLIP_RATIOS = tuple(1.0 - 0.05 * step for step in range(15))  # 1.0 … 0.3 of the observed range
SMALLEST_SCALE = 1e-8  # a channel or site that is all zeros still gets a valid (tiny) step


def signed_levels(bits: int) -> tuple[int, int]:
    """The integer codes of a b-bit signed grid: [−2^(b−1), 2^(b−1) − 1]."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def fake_quantize(
    values: torch.Tensor, scale: torch.Tensor | float, zero_point: int, low: int, high: int
) -> torch.Tensor:
    """(clamp(⌊x/Δ⌉ + z, low, high) − z)·Δ, in the dtype of `values`."""
    codes = torch.clamp(torch.round(values / scale) + zero_point, low, high)
    return (codes - zero_point) * scale


def weight_scales(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-output-channel symmetric steps Δ_c = max|W_c| / (2^(b−1) − 1): (out,)."""
    return weight.flatten(1).abs().amax(dim=1).clamp(min=SMALLEST_SCALE) / signed_levels(bits)[1]


def quantize_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """A Linear (out, in) or convolution (out, in, k, k) weight on its per-output-channel b-bit grid."""
    low, high = signed_levels(bits)
    scales = weight_scales(weight, bits).view(-1, *[1] * (weight.dim() - 1))  # (out, 1, …)
    return fake_quantize(weight, scales, 0, low, high)


def output_error(quantized: torch.Tensor, original: torch.Tensor, weight: torch.Tensor | None = None) -> float:
    """Mean squared error that quantising the input causes in the consumer's output, (Q(X) − X)·Wᵀ
    (the bias cancels), or in the tensor itself when no weight is given."""
    difference = quantized - original  # (R, F)
    if weight is not None:
        difference = difference @ weight.T  # (R, out)
    return float(difference.square().mean())


@dataclass(frozen=True)
class UniformGrid:
    """One fitted per-tensor grid: step `scale`, `zero_point`, codes [low, high]."""

    scale: float
    zero_point: int
    low: int
    high: int

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        return fake_quantize(values, self.scale, self.zero_point, self.low, self.high)


class ActivationQuantizer(nn.Module):
    """Per-tensor fake quantiser of the activation at one site, fitted on calibration rows.

    Float (identity) while `bits` is None. While `observing`, every input is added to the row sample
    (and the fitted grids are forgotten); `set_bits(b, weight)` fits the b-bit grid on the sample once
    and caches it, so a precision search can switch bit widths freely. `values_per_image` (set by
    `calibration.observe`) is how many numbers pass this site per image: its weight in the average
    activation bit width.
    """

    def __init__(self, kind: Kind = "symmetric", max_values: int = 2**20, seed: int = 0) -> None:
        super().__init__()
        check_choice(type(self).__name__, "kind", kind, ("symmetric", "asymmetric"))
        self.kind = kind
        self.bits: int | None = None
        self.observing = False
        self.sample = RowSample(max_values, seed)
        self.values_per_image = 0.0
        self.fitted: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}  # bits → fitted grid

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        if self.observing:
            self.sample.add(values)
            self.fitted.clear()
        if self.bits is None:
            return values
        return self.fitted[self.bits](values)

    def set_bits(self, bits: int | None, weight: torch.Tensor | None = None) -> None:
        """Quantise to `bits` from now on (None: float); `weight` is the consumer's, for the fit's error."""
        if bits is not None and bits not in self.fitted:
            self.fitted[bits] = self.fit(bits, weight)  # may raise (no calibration data): the precision stays as it was
        self.bits = bits

    @property
    def parameter_count(self) -> int:
        """Numbers stored for this site at its current precision: the scale (and the zero point); 0 when float."""
        if self.bits is None:
            return 0
        return 1 if self.kind == "symmetric" else 2

    @property
    def calibrated(self) -> bool:
        """Whether calibration data reached this site (a module whose forward never runs has none)."""
        return self.sample.rows is not None

    def calibration_rows(self) -> torch.Tensor:
        if self.sample.rows is None:
            raise RuntimeError(
                f"{type(self).__name__}: no calibration data; run `lit_vir.quantization.calibrated_copy` (or "
                "`observe`) on calibration images before choosing a bit width."
            )
        return self.sample.rows  # (R, F)

    def candidates(self, bits: int, rows: torch.Tensor) -> list[UniformGrid]:
        """Grids over the observed range shrunk by each of CLIP_RATIOS."""
        if self.kind == "symmetric":
            low, high = signed_levels(bits)
            reach = float(rows.abs().max())
            return [UniformGrid(max(ratio * reach / high, SMALLEST_SCALE), 0, low, high) for ratio in CLIP_RATIOS]
        top = 2**bits - 1
        smallest, largest = min(float(rows.min()), 0.0), max(float(rows.max()), 0.0)  # zero stays on the grid
        grids = []
        for ratio in CLIP_RATIOS:
            scale = max(ratio * (largest - smallest) / top, SMALLEST_SCALE)
            grids.append(UniformGrid(scale, round(-ratio * smallest / scale), 0, top))
        return grids

    def fit(self, bits: int, weight: torch.Tensor | None) -> UniformGrid:
        """The candidate grid with the least consumer-output error on the calibration rows."""
        rows = self.calibration_rows()
        return min(self.candidates(bits, rows), key=lambda grid: output_error(grid(rows), rows, weight))

    def extra_repr(self) -> str:
        return f"kind={self.kind}, bits={self.bits}"


class SegmentedQuantizer(nn.Module):
    """One per-tensor quantiser per segment of the last dimension, for an input concatenated from tensors
    of different ranges (ViR's readout reads [x ; h ; o ; x² ; h² ; o²]). Each segment is a tensor of its
    own before the concatenation, so its own scale factors out of its block of the matrix product.
    A segment of width 0 (a readout without reservoir nodes, N = 0) has no quantiser: nothing passes it."""

    def __init__(self, widths: Sequence[int], kinds: Sequence[Kind]) -> None:
        super().__init__()
        if len(widths) != len(kinds):
            raise ValueError(f"SegmentedQuantizer: {len(widths)} widths but {len(kinds)} kinds.")
        kept = [(width, kind) for width, kind in zip(widths, kinds, strict=True) if width > 0]
        self.widths = [width for width, _ in kept]
        self.parts = nn.ModuleList(ActivationQuantizer(kind) for _, kind in kept)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        pieces = values.split(self.widths, dim=-1)
        return torch.cat([part(piece) for part, piece in zip(self.parts, pieces, strict=True)], dim=-1)

    def set_bits(self, bits: int | None, weight: torch.Tensor | None = None) -> None:
        columns = weight.split(self.widths, dim=1) if weight is not None else [None] * len(self.widths)
        for part, block in zip(self.parts, columns, strict=True):
            part.set_bits(bits, block)
