"""Greedy mixed precision (MPTQ-ViT, Tai & Wu 2024): spend the bits where the calibration loss needs them.

Every quantised layer starts at 8 bits (weights and input, W_b A_b). Each step tries every layer one choice
lower, the others as they are, measures the calibration loss, and lowers the layer whose loss grows least
per weight bit saved, Δloss / (n_l·(b − b')), n_l being its number of weights. It stops when the average
weight bit width Σ n_l·b_l / Σ n_l is at most the target. Several targets share one greedy path: each
takes the first configuration that meets it.

- Choices (8, 6, 5, 4, 3): the spec's 8, 6, 5, 4 plus 3, so that a 4-bit average can keep sensitive layers
  above 4 by taking bits from robust ones. The average is over weights, so it sets the model's size.
- Calibration loss: KL(p_float ‖ p_quantised) of the class probabilities on the calibration images — needs
  no labels, is 0 for the float model, and is what accuracy loss follows.
- Cost: one calibration pass per candidate layer per step, about L²·(|choices| − 1) passes for L layers to
  reach the lowest choice (the greedy keeps the exact rule rather than a one-shot sensitivity table, since
  lowering one layer changes what the others cost).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lit_vir.quantization.calibration import predict
from lit_vir.quantization.modules import quantized_layers, set_precision

__all__ = [
    "BIT_CHOICES",
    "MixedPrecision",
    "SearchStep",
    "average_bits",
    "calibration_loss",
    "greedy_search",
    "layer_sizes",
]

BIT_CHOICES = (8, 6, 5, 4, 3)


@dataclass(frozen=True)
class SearchStep:
    """One greedy step: `layer` lowered to `bits`, giving `average_bits` and calibration `loss`."""

    layer: str
    bits: int
    average_bits: float
    loss: float


@dataclass(frozen=True)
class MixedPrecision:
    """Per target average, the bit width of every layer; and the greedy path that led there."""

    bits: dict[float, dict[str, int]]
    steps: list[SearchStep]


def layer_sizes(model: nn.Module) -> dict[str, int]:
    """Weights per quantised layer, n_l."""
    return {name: layer.weight.numel() for name, layer in quantized_layers(model).items()}


def average_bits(bits: Mapping[str, int], sizes: Mapping[str, int]) -> float:
    """Weight-weighted average bit width Σ n_l·b_l / Σ n_l."""
    return sum(sizes[name] * bits[name] for name in sizes) / sum(sizes.values())


@torch.no_grad()
def calibration_loss(model: nn.Module, images: torch.Tensor, reference: torch.Tensor, batch_size: int = 64) -> float:
    """Mean KL(p_float ‖ p_model) over the images, from the float model's logits `reference` (N, classes)."""
    logits = predict(model, images, batch_size)  # (N, classes)
    return float(F.kl_div(logits.log_softmax(-1), reference.log_softmax(-1), log_target=True, reduction="batchmean"))


def greedy_search(
    model: nn.Module,
    images: torch.Tensor,
    targets: Sequence[float],
    choices: Sequence[int] = BIT_CHOICES,
    batch_size: int = 64,
) -> MixedPrecision:
    """Bit widths per layer of a calibrated quantised copy meeting each target average (leaves the model at
    the lowest target's configuration)."""
    choices = sorted(set(choices), reverse=True)
    outside = [target for target in targets if target < choices[-1]]
    if not targets or outside:
        raise ValueError(
            f"greedy_search: targets {list(targets)} must be given and at least the lowest bit choice "
            f"{choices[-1]} (choices {choices}); lower the target or add a lower choice."
        )
    sizes = layer_sizes(model)
    set_precision(model, None)
    reference = predict(model, images, batch_size)
    current = dict.fromkeys(sizes, choices[0])
    set_precision(model, current)
    loss = calibration_loss(model, images, reference, batch_size)
    found: dict[float, dict[str, int]] = {}
    steps: list[SearchStep] = []
    while True:
        for target in targets:
            if target not in found and average_bits(current, sizes) <= target:
                found[target] = dict(current)
        if len(found) == len(set(targets)):
            return MixedPrecision(found, steps)
        best: tuple[float, str, int, float] | None = None
        for name, bits in current.items():
            if bits == choices[-1]:
                continue
            lower = choices[choices.index(bits) + 1]
            set_precision(model, current | {name: lower})
            trial = calibration_loss(model, images, reference, batch_size)
            score = (trial - loss) / (sizes[name] * (bits - lower))
            if best is None or score < best[0]:
                best = (score, name, lower, trial)
        _, name, current[name], loss = best
        set_precision(model, current)
        steps.append(SearchStep(name, current[name], average_bits(current, sizes), loss))
