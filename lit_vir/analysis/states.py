"""Reservoir trajectories and their statistics.

The recurrence of the spec (`vir.md`, "The reservoir"), row-vector convention, for a given drive:

    s_t = φ(h_{t−1}·W + u_t + b)            φ = tanh (or the identity, for linear-reservoir checks)
    h_t = (1 − a)·h_{t−1} + a·s_t

The step is the model's own (`lit_vir.models.reservoir.reservoir_step`), so an analysis runs exactly the
recurrence that `Reservoir.forward` runs. `run_reservoir` returns both h_t and the pre-leak output s_t,
which the Jacobian J_t = (1 − a)·I + a·diag(1 − s_t²)·Wᵀ needs. It batches over independent sequences, so B sequences of
T steps cost T products (B, N)·(N, N): O(T·B·N²) time and O(B·T·N) memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lit_vir.models.reservoir import Activation, reservoir_step

__all__ = ["Activation", "StateStatistics", "Trajectory", "reservoir_step", "run_reservoir", "state_statistics"]

SATURATION = 0.99


@dataclass(frozen=True)
class Trajectory:
    """States h_1..h_T and pre-leak outputs s_1..s_T, both (B, T, N)."""

    states: torch.Tensor
    activations: torch.Tensor


def run_reservoir(
    weight: torch.Tensor,
    drive: torch.Tensor,
    leak_rate: float = 1.0,
    *,
    initial_state: torch.Tensor | None = None,
    activation: Activation = "tanh",
) -> Trajectory:
    """Run the leaky recurrence for a drive (B, T, N) from h_0 = `initial_state` (B, N) or 0.

    Runs in the drive's dtype and device; W is cast to them.
    """
    weight = weight.to(drive)
    state = drive.new_zeros(drive.shape[0], drive.shape[2]) if initial_state is None else initial_state.to(drive)
    states, activations = [], []
    for step in range(drive.shape[1]):
        state, output = reservoir_step(state, drive[:, step], weight, leak_rate, activation)
        states.append(state)
        activations.append(output)
    return Trajectory(torch.stack(states, dim=1), torch.stack(activations, dim=1))


@dataclass(frozen=True)
class StateStatistics:
    """Summary of a tanh reservoir's states over all images, tokens and nodes.

    mean_abs: mean |h|. std: standard deviation of h. saturated_fraction: share of |h| > 0.99, where
    tanh is flat and a node has almost no gain. mean_gain: mean of 1 − s_t², the diagonal of the
    Jacobian's diag(1 − s_t²): the average local gain that, times α, sets the Lyapunov exponent.
    """

    mean_abs: float
    std: float
    saturated_fraction: float
    mean_gain: float


def state_statistics(trajectory: Trajectory) -> StateStatistics:
    """Statistics of a trajectory's states and pre-leak outputs (cost O(B·T·N))."""
    states = trajectory.states
    return StateStatistics(
        mean_abs=states.abs().mean().item(),
        std=states.std().item(),
        saturated_fraction=(states.abs() > SATURATION).double().mean().item(),
        mean_gain=(1.0 - trajectory.activations.square()).mean().item(),
    )
