"""SQ-b (MPTQ-ViT, Tai & Wu 2024): SmoothQuant with a bias shift, folded into LayerNorm → Linear pairs.

A LayerNorm's output X has a few channels with large, off-centre ranges, which a per-tensor symmetric grid
quantises badly. SQ-b rewrites the pair without changing its function:

    X' = (X − μ) / ε          per channel j: μ_j centres channel j, ε_j = max|X_j − μ_j|^α / max|W_:,j|^(1−α)
    Y  = X·Wᵀ + b = X'·(ε⊙W)ᵀ + (b + μ·Wᵀ)

μ makes every channel symmetric around 0 (the shift); ε is SmoothQuant's migration of range from the
activations to the weights (Xiao et al. 2023, α = 0.5 by default), which per-channel weight quantisation
absorbs. Both fold into LayerNorm's affine (γ' = γ/ε, β' = (β − μ)/ε), the Linear's weight (ε·W, column
j scaled by ε_j) and its bias (b + μ·Wᵀ): the float model's logits are unchanged.

μ is the midpoint of channel j's calibrated range, (max + min)/2 — the shift that makes the range exactly
symmetric, as in Outlier Suppression+ (Wei et al. 2023) — or, with `shift="mean"`, the channel's mean
over the calibration tokens (the spec's wording; the range is then only roughly centred).

Only pairs whose LayerNorm output reaches the Linear unchanged can be folded, so the pairs are listed per
architecture (`smoothing_pairs`): the ViT baseline and ReViT (norm1 → qkv, norm2 → fc1, norm → head) and
ViR (the residual MLP's norm → first Linear, the head's norm → Linear). Other backbones get none: SQ-b is
skipped for them and the rest of MPTQ-ViT still applies.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lit_vir.checks import check_choice
from lit_vir.models.revit import ReViT
from lit_vir.models.vir import ViR
from lit_vir.models.vit import VisionTransformer

__all__ = ["ChannelRange", "SmoothingPair", "channel_ranges", "fold_bias_shift", "smoothed_copy", "smoothing_pairs"]

Shift = Literal["midrange", "mean"]
SMALLEST = 1e-5


@dataclass(frozen=True)
class SmoothingPair:
    """A LayerNorm whose output feeds only `linear`; `name` is the LayerNorm's module name."""

    name: str
    norm: nn.LayerNorm
    linear: nn.Linear


@dataclass(frozen=True)
class ChannelRange:
    """Per-channel minimum, maximum and mean of a LayerNorm's output over the calibration tokens: (C,) each."""

    low: torch.Tensor
    high: torch.Tensor
    mean: torch.Tensor


def smoothing_pairs(model: nn.Module) -> list[SmoothingPair]:
    """The foldable LayerNorm → Linear pairs of a known architecture (exact classes: a subclass may route
    its LayerNorm outputs differently, as ViT-Slim's masks do); [] for any other backbone."""
    pairs = []
    if type(model) in (VisionTransformer, ReViT):
        for index, block in enumerate(model.blocks):
            pairs.append(SmoothingPair(f"blocks.{index}.norm1", block.norm1, block.attn.qkv))
            pairs.append(SmoothingPair(f"blocks.{index}.norm2", block.norm2, block.mlp.fc1))
        pairs.append(SmoothingPair("norm", model.norm, model.head))
    elif type(model) is ViR:
        for index, block in enumerate(model.blocks):
            pairs.append(SmoothingPair(f"blocks.{index}.norm", block.norm, block.mlp[0]))
        pairs.append(SmoothingPair("head.norm", model.head.norm, model.head.linear))
    return [pair for pair in pairs if pair.norm.elementwise_affine and pair.norm.bias is not None]


@torch.no_grad()
def channel_ranges(
    model: nn.Module, pairs: list[SmoothingPair], images: torch.Tensor, batch_size: int = 64
) -> dict[str, ChannelRange]:
    """Run the calibration images through `model` and record each pair's LayerNorm output per channel."""
    totals: dict[str, list[torch.Tensor]] = {}

    def recorder(name: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            rows = output.detach().reshape(-1, output.shape[-1]).double()  # (rows, C)
            seen = [rows.amin(dim=0), rows.amax(dim=0), rows.sum(dim=0), torch.tensor(rows.shape[0])]
            if name in totals:
                low, high, total, count = totals[name]
                seen = [torch.minimum(low, seen[0]), torch.maximum(high, seen[1]), total + seen[2], count + seen[3]]
            totals[name] = seen

        return record

    handles = [pair.norm.register_forward_hook(recorder(pair.name)) for pair in pairs]
    try:
        for batch in images.split(batch_size):
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return {name: ChannelRange(low, high, total / count) for name, (low, high, total, count) in totals.items()}


@torch.no_grad()
def fold_bias_shift(pair: SmoothingPair, ranges: ChannelRange, alpha: float = 0.5, shift: Shift = "midrange") -> None:
    """Fold SQ-b's shift μ and scale ε into `pair` in place (computed in float64, stored in the model's dtype)."""
    check_choice("SQ-b", "shift", shift, ("midrange", "mean"))
    norm, linear = pair.norm, pair.linear
    weight = linear.weight.double()  # (out, C)
    center = (ranges.high + ranges.low) / 2 if shift == "midrange" else ranges.mean  # μ (C,)
    reach = torch.maximum(ranges.high - center, center - ranges.low)  # max|X_j − μ_j| (C,)
    weight_reach = weight.abs().amax(dim=0).clamp(min=SMALLEST)  # max|W_:,j| (C,)
    epsilon = (reach.clamp(min=SMALLEST) ** alpha / weight_reach ** (1 - alpha)).clamp(min=SMALLEST)  # ε (C,)
    bias = linear.bias.double() if linear.bias is not None else weight.new_zeros(weight.shape[0])
    dtype = linear.weight.dtype
    norm.weight.copy_(norm.weight.double() / epsilon)
    norm.bias.copy_((norm.bias.double() - center) / epsilon)
    if linear.bias is None:
        linear.bias = nn.Parameter(torch.zeros_like(linear.weight[:, 0]))
    linear.bias.copy_((bias + weight @ center).to(dtype))
    linear.weight.copy_((weight * epsilon).to(dtype))


def smoothed_copy(
    model: nn.Module, images: torch.Tensor, alpha: float = 0.5, shift: Shift = "midrange", batch_size: int = 64
) -> nn.Module:
    """A copy of `model` with SQ-b folded into every pair of `smoothing_pairs`: the same float function,
    with LayerNorm outputs centred and range-balanced for symmetric per-tensor quantisation."""
    smoothed = copy.deepcopy(model).eval()
    pairs = smoothing_pairs(smoothed)
    ranges = channel_ranges(smoothed, pairs, images, batch_size)
    for pair in pairs:
        fold_bias_shift(pair, ranges[pair.name], alpha, shift)
    return smoothed
