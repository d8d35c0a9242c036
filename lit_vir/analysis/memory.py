"""Short-term memory capacity (Jaeger 2001, "Short term memory in echo state networks", GMD Report 152).

Drive the reservoir with i.i.d. scalar input u(t) ~ U[−0.8, 0.8] through a fixed 1×N vector v
(`drives.scalar_input_vector`), discard a washout, and fit one linear readout per delay,
y_k(t) = w_kᵀ·h_t + c_k ≈ u(t − k), k = 1..k_max. Then

    MC_k = corr²(u(t − k), y_k(t))   on held-out test sequences,      MC = Σ_k MC_k ≤ N         (4)

(the bound: N linear features cannot store more than N independent past inputs; states that never vary —
v = 0, or amplitude 0 — recall nothing: MC = 0). All k_max readouts
share the Gram matrix, so they come from ONE ridge solve with k_max right-hand sides:

    W_out = (XᵀX + β·I)⁻¹·XᵀY,   X (n, N) centred states, Y (n, k_max) centred delayed inputs,
    β = ridge·tr(XᵀX)/N  (a relative ridge, so one value suits any state scale).

Cost at the defaults (10 sequences of 200 + 1000 steps, 8 for training and 2 for testing, k_max 200):
the trajectories, O(12,000·N²) in batches of 10; the Gram matrix, O(8,000·N²); one N×N solve, O(N³):
about 3 s at N = 1000 in float64 on one core of this project's 2-core CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lit_vir.analysis.drives import iid_scalar_input, scalar_drive
from lit_vir.analysis.states import Activation, run_reservoir

__all__ = ["MemoryCapacity", "memory_capacity"]


@dataclass(frozen=True)
class MemoryCapacity:
    """MC_k for k = 1..k_max ((k_max,), entry k − 1) and their sum MC."""

    per_delay: torch.Tensor
    total: float


def memory_capacity(
    weight: torch.Tensor,
    input_vector: torch.Tensor,
    leak_rate: float = 1.0,
    bias: torch.Tensor | None = None,
    *,
    max_delay: int = 200,
    washout: int = 200,
    steps: int = 1000,
    train_sequences: int = 8,
    test_sequences: int = 2,
    ridge: float = 1e-6,
    amplitude: float = 0.8,
    activation: Activation = "tanh",
    seed: int = 0,
) -> MemoryCapacity:
    """MC by equation (4) for W (N, N) driven through v (N,); float64 on W's device.

    Each sequence runs `washout + steps` steps from h_0 = 0; the samples are its last `steps` steps
    that have all k_max delayed inputs inside the sequence. `activation="identity"` gives the linear
    reservoir, whose MC approaches N for an orthogonal W scaled close to 1.
    """
    if steps <= 0 or max_delay <= 0 or train_sequences <= 0 or test_sequences <= 0:
        raise ValueError("steps, max_delay, train_sequences and test_sequences must all be positive")
    weight = weight.to(torch.float64)
    total_steps = washout + steps
    if max_delay >= total_steps:
        raise ValueError(f"max_delay = {max_delay} needs sequences longer than washout + steps = {total_steps}")
    sequences = train_sequences + test_sequences
    inputs = iid_scalar_input(sequences, total_steps, amplitude=amplitude, seed=seed).to(weight.device)  # (S, W+T)
    vector = input_vector.to(weight)
    drive = scalar_drive(inputs, vector, None if bias is None else bias.to(weight))  # (S, W+T, N)
    states = run_reservoir(weight, drive, leak_rate, activation=activation).states  # (S, W+T, N)

    start = max(washout, max_delay)
    windows = inputs.unfold(1, max_delay + 1, 1)  # (S, W+T−k_max, k_max+1): u(t−k_max)..u(t)
    targets = windows.flip(-1)[:, start - max_delay :, 1:]  # (S, n_s, k_max): column k−1 is u(t−k)
    features = states[:, start:]  # (S, n_s, N)

    train_x = features[:train_sequences].reshape(-1, features.shape[-1])  # (n, N)
    train_y = targets[:train_sequences].reshape(-1, max_delay)  # (n, k_max)
    x_mean, y_mean = train_x.mean(dim=0), train_y.mean(dim=0)
    train_x, train_y = train_x - x_mean, train_y - y_mean
    gram = train_x.T @ train_x  # (N, N)
    regulariser = ridge * gram.diagonal().mean()
    if regulariser > 0:
        gram.diagonal().add_(regulariser)
        readout = torch.linalg.solve(gram, train_x.T @ train_y)  # (N, k_max): one solve, k_max right-hand sides
    else:  # the states never vary (no input reaches the nodes): no readout recalls anything, MC = 0
        readout = gram.new_zeros(gram.shape[0], max_delay)

    test_x = features[train_sequences:].reshape(-1, features.shape[-1]) - x_mean  # (n_test, N)
    test_y = targets[train_sequences:].reshape(-1, max_delay)  # (n_test, k_max)
    predicted = test_x @ readout
    predicted = predicted - predicted.mean(dim=0)
    test_y = test_y - test_y.mean(dim=0)
    covariance = (predicted * test_y).sum(dim=0)
    variance = predicted.square().sum(dim=0) * test_y.square().sum(dim=0)
    per_delay = torch.where(variance > 0, covariance.square() / variance, torch.zeros_like(variance))
    return MemoryCapacity(per_delay.cpu(), per_delay.sum().item())
