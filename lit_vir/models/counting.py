"""Parameter counts in the paper's terms and training FLOPs, the numbers its cost claims are about."""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import (
    FlopCounterMode,
    register_flop_formula,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from lit_vir.models.reservoir import Reservoir

__all__ = ["ParameterCount", "count_parameters", "forward_flops", "training_flops"]


@dataclass(frozen=True)
class ParameterCount:
    """`trainable`: the model's learnable weights (its nn.Parameters), counted as the paper counts them —
    ViR's patch embedding included, although it stays frozen unless `train_embedding`;
    `frozen`: how many of those receive no gradient in this configuration;
    `fixed`: the reservoirs' random matrices W, V (and bias b), which are never learnable."""

    trainable: int
    frozen: int
    fixed: int


def count_parameters(model: nn.Module) -> ParameterCount:
    reservoir_buffers = (
        buffer.numel()
        for module in model.modules()
        if isinstance(module, Reservoir)
        for buffer in module.buffers(recurse=False)
    )
    return ParameterCount(
        trainable=sum(p.numel() for p in model.parameters()),
        frozen=sum(p.numel() for p in model.parameters() if not p.requires_grad),
        fixed=sum(reservoir_buffers),
    )


# What torch.utils.flop_counter does not count by itself: the reservoir's in-place step, the ridge readout's
# in-place update of its normal equations and PyTorch's CPU attention kernels (forward and backward); without them
# ViR's recurrence, the ridge's A += [f;1]ᵀ[f;1] and ViT's q·kᵀ and softmax·V count 0.
# Registered in torch's own registry, so every FlopCounterMode counts them (Lightning's model summary included).
@register_flop_formula(torch.ops.aten.baddbmm_)
def _batched_product_flops(self_shape, left_shape, right_shape, *args, out_shape=None, **kwargs) -> int:
    """(b, m, k)·(b, k, n): 2·b·m·k·n."""
    batch, rows, inner = left_shape
    return 2 * batch * rows * inner * right_shape[-1]


@register_flop_formula(torch.ops.aten.addmm_)
def _product_flops(self_shape, left_shape, right_shape, *args, out_shape=None, **kwargs) -> int:
    """(m, k)·(k, n): 2·m·k·n."""
    rows, inner = left_shape
    return 2 * rows * inner * right_shape[-1]


@register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
def _attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


@register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward)
def _attention_backward_flops(grad_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_shape, query_shape, key_shape, value_shape)


def training_flops(model: nn.Module, images: torch.Tensor, num_classes: int) -> int:
    """FLOPs (2 per multiply-add) of one training step's forward and backward on `images` (B, C, H, W): matrix
    products and convolutions, counted by `torch.utils.flop_counter`, as executed (a frozen layer's weight
    gradient and the image's gradient are not computed, so not counted).

    Runs on a copy of `model`, in training mode, with the random streams forked: the model's weights, buffers
    (BatchNorm statistics) and the run's random numbers are untouched.
    """
    copy = deepcopy(model).train()
    labels = torch.arange(images.shape[0], device=images.device) % num_classes
    with (
        # the GPU's generator too where the step runs there: its dropout draws from it, not from the CPU's
        torch.random.fork_rng(devices=[images.device] if images.is_cuda else []),
        FlopCounterMode(display=False) as counter,
    ):
        torch.nn.functional.cross_entropy(copy(images), labels).backward()
    return counter.get_total_flops()


def forward_flops(model: nn.Module, images: torch.Tensor) -> int:
    """FLOPs (2 per multiply-add) of one inference forward on `images` (B, C, H, W), in evaluation mode without a
    gradient, as `training_flops` counts them; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(images)
    finally:
        model.train(was_training)
    return counter.get_total_flops()
