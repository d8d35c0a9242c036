"""Parameter counts in the paper's terms, the numbers its cost claims are about."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from lit_vir.models.reservoir import Reservoir

__all__ = ["ParameterCount", "count_parameters"]


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
