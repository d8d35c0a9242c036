"""Trainable vs fixed parameter counts, the numbers the paper's cost claims are about."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from lit_vir.models.reservoir import Reservoir

__all__ = ["ParameterCount", "count_parameters"]


@dataclass(frozen=True)
class ParameterCount:
    """`trainable`: parameters the optimiser holds (the paper's count, which includes ViR's patch
    embedding even when it receives no gradient); `fixed`: reservoir buffers (W, V, b) plus frozen
    parameters."""

    trainable: int
    fixed: int

    @property
    def total(self) -> int:
        return self.trainable + self.fixed


def count_parameters(model: nn.Module) -> ParameterCount:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    reservoir = sum(
        buffer.numel()
        for module in model.modules()
        if isinstance(module, Reservoir)
        for buffer in module.buffers(recurse=False)
    )
    return ParameterCount(trainable=trainable, fixed=frozen + reservoir)
