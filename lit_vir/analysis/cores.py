"""The reservoirs of a ViR, each with the input it really sees (spec `vir.md`, "Deep ViR").

Parallel mode: one bank of L reservoirs, all reading the patch tokens. Serial mode: L banks of one,
core i reading core i−1's outputs z. Rather than re-implementing the model's loop, the inputs are
recorded by forward pre-hooks on the reservoir banks during one `forward_features` pass, so they are
exactly what the model feeds its reservoirs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lit_vir.analysis.drives import ReservoirTensors, reservoir_tensors
from lit_vir.models.vir import ViR

__all__ = ["ReservoirCore", "reservoir_cores"]


@dataclass(frozen=True)
class ReservoirCore:
    """One reservoir of a ViR: `core0`, `core1`, …, its tensors, and its input tokens (B, T, D) or None."""

    name: str
    tensors: ReservoirTensors
    tokens: torch.Tensor | None


@torch.no_grad()
def reservoir_cores(model: ViR, images: torch.Tensor | None = None) -> list[ReservoirCore]:
    """Every reservoir of `model`, in core order, with the tokens it reads for `images` (B, C, H, W).

    The model runs once in eval mode (no dropout) when images are given, on its device and in its dtype;
    its mode is restored after.
    """
    inputs: dict[int, torch.Tensor] = {}
    if images is not None:
        parameter = next(model.parameters())
        inputs = _record_reservoir_inputs(model, images.to(device=parameter.device, dtype=parameter.dtype))
    cores = []
    for bank_index, bank in enumerate(model.reservoirs):
        for index in range(bank.num_reservoirs):
            tokens = inputs.get(bank_index)
            cores.append(ReservoirCore(f"core{len(cores)}", reservoir_tensors(bank, index), tokens))
    return cores


def _record_reservoir_inputs(model: ViR, images: torch.Tensor) -> dict[int, torch.Tensor]:
    inputs: dict[int, torch.Tensor] = {}

    def recorder(bank_index: int):
        def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            inputs[bank_index] = args[0].detach().to(torch.float64)  # (B, T, D)

        return record

    handles = [bank.register_forward_pre_hook(recorder(i)) for i, bank in enumerate(model.reservoirs)]
    was_training = model.training
    try:
        model.eval()
        model.forward_features(images)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return inputs
