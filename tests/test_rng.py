"""Random-number-generator state as checkpoint data (`lit_vir.training.rng`): after a restore, torch, numpy and
Python draw exactly what they drew after the capture, including the Gaussians each caches between calls, and the
state survives a weights-only checkpoint load."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch

from lit_vir.training.rng import capture_rng_state, restore_rng_state


def draws() -> list:
    """A few draws from every stream; the Gaussians come second, so a cached half of a pair is used first."""
    return [
        torch.rand(3).tolist(),
        torch.randn(2).tolist(),
        np.random.rand(3).tolist(),
        np.random.standard_normal(3).tolist(),
        [random.random() for _ in range(3)],
        [random.gauss(0.0, 1.0) for _ in range(3)],
    ]


def test_a_restored_state_draws_what_the_captured_one_drew():
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.standard_normal()  # legacy numpy draws Gaussians in pairs: one is now cached (has_gauss = 1)
    random.gauss(0.0, 1.0)  # Python too: gauss_next is set
    state = capture_rng_state()
    assert state["numpy"]["has_gauss"] == 1 and state["python"]["gauss_next"] is not None
    first = draws()
    restore_rng_state(state)
    assert draws() == first


def test_a_state_without_cached_gaussians_restores_too_and_each_stream_is_its_own():
    np.random.seed(4)
    random.seed(5)
    torch.manual_seed(6)
    state = capture_rng_state()
    assert state["numpy"]["has_gauss"] == 0 and state["python"]["gauss_next"] is None
    first = draws()
    torch.manual_seed(7)  # every stream moved elsewhere ...
    np.random.seed(8)
    random.seed(9)
    restore_rng_state(state)  # ... and each brought back
    assert draws() == first


def test_the_state_is_plain_data_that_a_weights_only_load_accepts():
    state = capture_rng_state()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded["numpy"]["keys"].dtype == torch.int64 and loaded["numpy"]["keys"].shape == (624,)
    assert torch.equal(
        loaded["numpy"]["keys"].to(torch.int64), torch.from_numpy(np.random.get_state()[1].astype(np.int64))
    )
    first = draws()
    restore_rng_state(loaded)
    assert draws() == first


class FakeCuda:
    """A stand-in for torch.cuda's generator functions — a mock, because these machines have no GPU (the real
    device is tested by `test_the_cuda_generators_draw_again_what_they_drew`, skipped without CUDA). It records what
    restore sets."""

    def __init__(self, available: bool, initialized: bool) -> None:
        self.available, self.initialized, self.set = available, initialized, []

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: self.available)
        monkeypatch.setattr(torch.cuda, "is_initialized", lambda: self.initialized)
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.tensor([7, 8], dtype=torch.uint8)])
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", self.set.append)


def test_the_cuda_generators_are_kept_only_where_cuda_is_in_use_and_set_back_only_there(monkeypatch):
    FakeCuda(available=True, initialized=False).install(monkeypatch)  # a GPU that this process never touched
    assert "cuda" not in capture_rng_state()
    in_use = FakeCuda(available=True, initialized=True)
    in_use.install(monkeypatch)
    state = capture_rng_state()
    assert [tensor.tolist() for tensor in state["cuda"]] == [[7, 8]]
    restore_rng_state(state)
    assert in_use.set == [state["cuda"]]
    restore_rng_state({key: value for key, value in state.items() if key != "cuda"})  # captured on a CPU machine
    assert len(in_use.set) == 1  # nothing to set back
    gone = FakeCuda(available=False, initialized=False)  # restored where there is no GPU: the CPU streams only
    gone.install(monkeypatch)
    restore_rng_state(state)
    assert gone.set == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_cuda_generators_draw_again_what_they_drew():
    torch.cuda.manual_seed_all(0)
    torch.rand(1, device="cuda")  # CUDA is now initialised: its generators belong to the state
    state = capture_rng_state()
    first = torch.rand(4, device="cuda").tolist()
    restore_rng_state(state)
    assert torch.rand(4, device="cuda").tolist() == first
