"""Post-training calibration: from a trained float model and a few training images to a quantised copy.

MPTQ-ViT (Tai & Wu 2024) needs no retraining, only a small calibration set (256–1024 training images):

1. SQ-b (`smoothing.py`): record each foldable LayerNorm's output range per channel, fold the shift and
   the smoothing scale into the LayerNorm and its Linear (the float function is unchanged);
2. swap the attention and Linear layers for quantised ones (`modules.py`);
3. observe: run the calibration images through the (still float) copy; every activation quantiser keeps a
   uniform sample of the rows it sees (activations of the float model, as in SmoothQuant and PTQ4ViT)
   and counts the numbers that pass it per image (the weights of the average activation width).

Grids are fitted lazily from those samples when `set_precision` first asks for a bit width, so one
calibrated copy serves W8A8, W6A6, W4A4 and every step of the mixed-precision search.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lit_vir.checks import check_choice, check_range
from lit_vir.quantization.modules import quantized_copy
from lit_vir.quantization.precision import set_precision
from lit_vir.quantization.quantizers import ActivationQuantizer
from lit_vir.quantization.smoothing import Shift, smoothed_copy
from lit_vir.quantization.softmax import SOFTMAX_QUANTIZERS, SoftmaxKind

__all__ = ["Recipe", "calibrated_copy", "observe", "predict"]


@dataclass(frozen=True)
class Recipe:
    """Which of MPTQ-ViT's parts to use: `sq_b` (with SmoothQuant strength `alpha` and the `shift` rule
    for μ), `opt_m` (two-scale post-GELU quantisation), the `softmax` output's quantiser (`softmax.py`),
    and `search_edges` (the patch embedding and head at the model's widths and in the search, instead of
    fixed at W8A8). SQ-b and OPT-m off with a uniform softmax grid is plain min-MSE PTQ."""

    sq_b: bool = True
    opt_m: bool = True
    softmax: SoftmaxKind = "two_scale"
    search_edges: bool = False
    alpha: float = 0.5
    shift: Shift = "midrange"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_range(owner, "alpha (SmoothQuant migration strength)", self.alpha, low=0, high=1)
        check_choice(owner, "softmax", self.softmax, SOFTMAX_QUANTIZERS)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Logits of `images` (N, C, H, W) in batches: (N, classes)."""
    return torch.cat([model(batch) for batch in images.split(batch_size)])


@torch.no_grad()
def observe(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> None:
    """Run `images` through the float copy with every activation quantiser recording its input rows."""
    set_precision(model, None)
    quantizers = [module for module in model.modules() if isinstance(module, ActivationQuantizer)]
    for quantizer in quantizers:
        quantizer.sample.clear()
        quantizer.observing = True
    try:
        predict(model, images, batch_size)
    finally:
        for quantizer in quantizers:
            quantizer.observing = False
    for quantizer in quantizers:
        quantizer.values_per_image = quantizer.sample.seen / len(images)


def calibrated_copy(
    model: nn.Module, images: torch.Tensor, recipe: Recipe | None = None, batch_size: int = 64
) -> nn.Module:
    """A quantised copy of `model` (eval mode), calibrated on `images` (N, C, H, W) and still float:
    choose its bit widths with `set_precision`."""
    recipe = recipe or Recipe()
    if recipe.sq_b:
        model = smoothed_copy(model, images, recipe.alpha, recipe.shift, batch_size)
    quantized = quantized_copy(model, recipe.opt_m, recipe.softmax, recipe.search_edges)
    observe(quantized, images, batch_size)
    return quantized
