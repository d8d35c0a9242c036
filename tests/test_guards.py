"""The run guards (`lit_vir.training.guards`) in process: each diagnosis of a non-finite loss word for word for the
case that calls for it, the reservoir checksum against a SHA-256 computed here, and the DDP mismatch message."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from lit_vir.models import ViR
from lit_vir.training.guards import (
    ReservoirMismatchError,
    diagnose_non_finite,
    reservoir_checksum,
    verify_same_reservoirs,
)

HEAD = "training loss is nan at step 3; stopping before the weights are ruined."
DIVERGED = (
    "Parameter {name!r} is NaN/Inf: the updates diverged. Lower the learning rate "
    "(model.init_args.optimizer.init_args.lr), add gradient clipping (--trainer.gradient_clip_val 1.0), or use warm-up."
)
STATES = (
    "The reservoir states are NaN/Inf: the drive u = x·V overflowed. Lower input_scaling or spectral_radius (α), or "
    "keep the recurrence in float32 (autocast_recurrence: false)."
)
READOUT = (
    "The reservoir states are finite (tanh bounds them), so the readout/head produced the overflow: lower the "
    "learning rate, or try precision 32-true if you train in 16-mixed."
)
NAN = torch.tensor(float("nan"))


def tiny_vir(**options) -> ViR:
    settings = dict(num_classes=10, image_size=8, in_channels=1, patch_size=4, num_nodes=16, jump_size=3)
    return ViR(**settings, embed_dim=8, mlp_dim=8, **options)


def test_a_bad_input_batch_is_named_first_and_alone():
    images = torch.ones(2, 1, 8, 8)
    images[1, 0, 3, 3] = float("inf")
    message = diagnose_non_finite(tiny_vir(), images, NAN, step=3)
    assert message == f"{HEAD}\nThe input batch holds NaN/Inf: check the dataset files and the normalisation."


def test_finite_states_and_weights_point_at_the_readout():
    assert diagnose_non_finite(tiny_vir(), torch.ones(2, 1, 8, 8), NAN, step=3) == f"{HEAD}\n{READOUT}"


def test_a_diverged_parameter_is_named_and_finite_states_do_not_blame_the_readout():
    model = tiny_vir()
    with torch.no_grad():
        model.head.linear.weight[0, 0] = float("nan")
    name = next(name for name, parameter in model.named_parameters() if parameter is model.head.linear.weight)
    assert diagnose_non_finite(model, torch.ones(2, 1, 8, 8), NAN, step=3) == f"{HEAD}\n{DIVERGED.format(name=name)}"


def test_overflowing_states_blame_the_drive():
    model = tiny_vir()
    with torch.no_grad():
        model.reservoirs[0].input_weight.fill_(float("inf"))  # a buffer, not a parameter: only the states are bad
    assert diagnose_non_finite(model, torch.ones(2, 1, 8, 8), NAN, step=3) == f"{HEAD}\n{STATES}"


def test_a_model_without_a_reservoir_gets_no_state_diagnosis():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert diagnose_non_finite(model, torch.ones(2, 1, 8, 8), torch.tensor(float("inf")), step=0) == (
        "training loss is inf at step 0; stopping before the weights are ruined."
    )


def expected_checksum(model: nn.Module) -> int:
    """SHA-256 over each reservoir buffer's qualified name and its float64 bytes, in module order; 63 bits."""
    digest = hashlib.sha256()
    for name, module in model.named_modules():
        if type(module).__name__ == "Reservoir":
            for buffer_name, buffer in module.named_buffers(recurse=False):
                digest.update(f"{name}.{buffer_name}".encode())
                digest.update(buffer.double().numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "big") >> 1


def test_the_reservoir_checksum_is_a_63_bit_sha256_of_every_reservoir_buffer():
    model = tiny_vir(depth=2, mode="serial", bias_scaling=0.2)  # W, V and b of two banks
    assert reservoir_checksum(model) == expected_checksum(model) and reservoir_checksum(model) < 2**63
    assert reservoir_checksum(tiny_vir(depth=2, mode="serial", bias_scaling=0.2)) == reservoir_checksum(model)
    other = tiny_vir(depth=2, mode="serial", bias_scaling=0.2)
    with torch.no_grad():
        other.reservoirs[1].input_weight[0, 0] += 1e-6  # one number of the second bank
    assert reservoir_checksum(other) != reservoir_checksum(model)
    assert reservoir_checksum(nn.Linear(2, 2)) == 0


def test_ranks_with_different_reservoirs_are_named_with_their_checksums():
    verify_same_reservoirs([5])
    verify_same_reservoirs([7, 7, 7])
    with pytest.raises(ReservoirMismatchError) as error:
        verify_same_reservoirs([7, 7, 255])
    assert str(error.value) == (
        "DDP ranks built different reservoirs (rank 0: 0000000000000007, rank 1: 0000000000000007, rank 2: "
        "00000000000000ff). Every rank must draw W and V from the same seed: check that "
        "model.init_args.backbone.init_args.seed is a fixed integer and that no rank loads different weights."
    )


class Wrapped(nn.Module):
    """A ViR inside another module, which has no `embed` of its own: the states cannot be driven, so none is said."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_vir()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.inner(images)


def test_a_reservoir_the_guard_cannot_drive_gets_no_state_diagnosis():
    assert diagnose_non_finite(Wrapped(), torch.ones(2, 1, 8, 8), NAN, step=3) == HEAD


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_checksum_of_a_model_on_a_gpu_is_its_checksum_on_the_cpu():
    model = tiny_vir(depth=2, mode="serial", bias_scaling=0.2)
    assert reservoir_checksum(model.cuda()) == expected_checksum(model.cpu())
