"""Checks that stop a run early with a message a person can act on, instead of wasting a night.

- a non-finite loss, with the likely cause read off the model (reservoir states, weights, inputs);
- reservoirs that differ between DDP ranks (each rank builds W and V from the seed; verify it).
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from lit_vir.models.reservoir import Reservoir

__all__ = [
    "NonFiniteLossError",
    "ReservoirMismatchError",
    "diagnose_non_finite",
    "reservoir_checksum",
    "verify_same_reservoirs",
]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class ReservoirMismatchError(RuntimeError):
    """DDP ranks built different reservoirs, so they would train different models."""


def _first_non_finite_parameter(model: nn.Module) -> str | None:
    return next((name for name, p in model.named_parameters() if not torch.isfinite(p).all()), None)


def _reservoir_states_finite(model: nn.Module, images: torch.Tensor) -> bool | None:
    """Whether ViR's reservoir states are finite for this batch (None if the model has no reservoir)."""
    if not any(isinstance(module, Reservoir) for module in model.modules()) or not hasattr(model, "embed"):
        return None
    reservoir = next(module for module in model.modules() if isinstance(module, Reservoir))
    with torch.no_grad():
        return bool(torch.isfinite(reservoir(model.embed(images))).all())


def diagnose_non_finite(model: nn.Module, images: torch.Tensor, loss: torch.Tensor, step: int) -> str:
    """A message naming the step, what is non-finite, and the settings most likely to blame."""
    lines = [f"training loss is {loss.item()} at step {step}; stopping before the weights are ruined."]
    if not torch.isfinite(images).all():
        lines.append("The input batch holds NaN/Inf: check the dataset files and the normalisation.")
        return "\n".join(lines)
    broken = _first_non_finite_parameter(model)
    if broken is not None:
        lines.append(
            f"Parameter {broken!r} is NaN/Inf: the updates diverged. Lower the learning rate "
            "(model.init_args.optimizer.init_args.lr), add gradient clipping "
            "(--trainer.gradient_clip_val 1.0), or use warm-up."
        )
    states_finite = _reservoir_states_finite(model, images)
    if states_finite is False:
        lines.append(
            "The reservoir states are NaN/Inf: the drive u = x·V overflowed. Lower input_scaling or "
            "spectral_radius (α), or keep the recurrence in float32 (autocast_recurrence: false)."
        )
    elif states_finite is True and broken is None:
        lines.append(
            "The reservoir states are finite (tanh bounds them), so the readout/head produced the "
            "overflow: lower the learning rate, or try precision 32-true if you train in 16-mixed."
        )
    return "\n".join(lines)


def reservoir_checksum(model: nn.Module) -> int:
    """A 63-bit digest of every reservoir buffer (W, V, b) of the model; 0 if it has none."""
    digest = hashlib.sha256()
    reservoirs = [(name, module) for name, module in model.named_modules() if isinstance(module, Reservoir)]
    for name, module in reservoirs:
        for buffer_name, buffer in module.named_buffers(recurse=False):
            digest.update(f"{name}.{buffer_name}".encode())
            digest.update(buffer.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "big") >> 1 if reservoirs else 0


def verify_same_reservoirs(checksums: list[int]) -> None:
    """Raise ReservoirMismatchError unless every rank's reservoir checksum is the same."""
    if len(set(checksums)) > 1:
        listing = ", ".join(f"rank {rank}: {value:016x}" for rank, value in enumerate(checksums))
        raise ReservoirMismatchError(
            f"DDP ranks built different reservoirs ({listing}). Every rank must draw W and V from the same "
            "seed: check that model.init_args.backbone.init_args.seed is a fixed integer and that no rank "
            "loads different weights."
        )
