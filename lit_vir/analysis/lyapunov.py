"""Largest Lyapunov exponent λ of the driven reservoir (spec `vir.md`, "Dynamics"), and the first k.

λ < 0: ordered (nearby trajectories converge, the echo-state regime); λ ≈ 0: the edge of chaos;
λ > 0: chaotic. Exponents are per step (per token), natural log. All three estimators run the same
trajectory h_t of `states.run_reservoir` (float64) from h_0 = 0 and average over steps t > `washout`
of every sequence of the drive (B, T, N): real tokens of B images, or B i.i.d. input sequences.

(a) Jacobian method:      λ = (1/T)·Σ_t ln ρ(J_t),  J_t = (1 − a)·I + a·diag(1 − s_t²)·Wᵀ          (1)
(b) perturbation method:  λ = (1/T)·Σ_t ln(‖δ_t‖/ε),  δ_t = h'_t − h_t,  h'_t ← h_t + ε·δ_t/‖δ_t‖    (2)
(c) QR method (Benettin et al. 1980): Q_t R_t = J_t·Q_{t−1},  λ_i = (1/T)·Σ_t ln|R_t[i, i]|            (3)

(1) needs one N×N eigenvalue problem per step, O(N³): 0.4 s in float32 (0.7 s in float64) at N = 1000 on
one core of this project's 2-core CPU. It is therefore averaged over `samples` steps spread evenly over all
(sequence, step) pairs — 8 by default, about 4 s at N = 1000 with the trajectory —, not over all B·T steps.
(2) costs O(B·T·N²), about 1 s for 4 sequences of 300 steps at N = 1000; (3) O(B·T·N²·k).

(1) and (2) agree where the drive is stationary (the i.i.d. protocol: −0.120 and −0.126 on the reference
reservoir, whose anchor is λ ≈ −0.12). Under real image tokens, which saturate a changing subset of nodes,
(1) reads 0.01–0.07 less negative than (2) at N = 1000: ρ(J_t) describes repeating one J_t, not the product
of different ones, and with few unsaturated nodes a product grows more slowly than its factors' radii.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lit_vir.analysis.states import reservoir_step, run_reservoir

__all__ = ["LyapunovEstimate", "lyapunov_jacobian", "lyapunov_perturbation", "lyapunov_spectrum"]

EIGEN_CHUNK = 8  # Jacobians per batched eigenvalue call: 8 × N² floats in memory at a time


@dataclass(frozen=True)
class LyapunovEstimate:
    """λ (per step) and the local values it averages: ln ρ(J_t) (S,) or ln(‖δ_t‖/ε) (B, T)."""

    exponent: float
    local: torch.Tensor


def lyapunov_jacobian(
    weight: torch.Tensor,
    drive: torch.Tensor,
    leak_rate: float = 1.0,
    *,
    washout: int = 0,
    samples: int | None = 8,
    eig_dtype: torch.dtype = torch.float32,
) -> LyapunovEstimate:
    """λ by equation (1) over `samples` evenly spaced (sequence, step) pairs after the washout (None: all).

    Cost: one trajectory, O(B·T·N²), plus `samples` eigenvalue problems, O(samples·N³) (module docstring).
    `eig_dtype` float32 keeps ln ρ accurate to ~1e-5, far below the spread of ln ρ(J_t) over steps.
    """
    activations = run_reservoir(weight, drive, leak_rate).activations[:, washout:]  # (B, T', N)
    flat = activations.reshape(-1, activations.shape[-1])  # (B·T', N)
    count = flat.shape[0] if samples is None else min(samples, flat.shape[0])
    if count < 1:
        raise ValueError(f"no steps left after washout = {washout} of {drive.shape[1]}; lower the washout")
    chosen = torch.linspace(0, flat.shape[0] - 1, count, device=flat.device).round().long()
    gains = 1.0 - flat[chosen].square()  # (S, N): the diagonal of diag(1 − s_t²)
    transposed = weight.to(drive).T
    identity = torch.eye(transposed.shape[0], dtype=drive.dtype, device=drive.device)
    radii = []
    for chunk in gains.split(EIGEN_CHUNK):
        jacobians = (1.0 - leak_rate) * identity + leak_rate * chunk[:, :, None] * transposed  # (S', N, N)
        radii.append(torch.linalg.eigvals(jacobians.to(eig_dtype)).abs().amax(dim=-1).to(drive.dtype))
    local = torch.cat(radii).log()  # (S,)
    return LyapunovEstimate(local.mean().item(), local)


def lyapunov_perturbation(
    weight: torch.Tensor,
    drive: torch.Tensor,
    leak_rate: float = 1.0,
    *,
    washout: int = 0,
    epsilon: float = 1e-8,
    seed: int = 0,
) -> LyapunovEstimate:
    """λ by equation (2): a twin trajectory at distance ε (random seeded direction), renormalised every step.

    Runs in the drive's dtype (give float64: ε = 1e-8 is below float32 resolution). Cost O(B·T·N²).
    """
    weight = weight.to(drive)
    generator = torch.Generator().manual_seed(seed)
    shape = (drive.shape[0], drive.shape[2])
    direction = torch.randn(shape, generator=generator, dtype=torch.float64, device=generator.device).to(drive)
    state = drive.new_zeros(drive.shape[0], drive.shape[2])  # (B, N)
    twin = state + epsilon * direction / direction.norm(dim=1, keepdim=True)
    growth = []
    for step in range(drive.shape[1]):
        state, _ = reservoir_step(state, drive[:, step], weight, leak_rate)
        twin, _ = reservoir_step(twin, drive[:, step], weight, leak_rate)
        separation = twin - state  # (B, N)
        distance = separation.norm(dim=1).clamp_min(torch.finfo(drive.dtype).tiny)  # (B,)
        growth.append((distance / epsilon).log())
        twin = state + separation * (epsilon / distance)[:, None]
    local = torch.stack(growth, dim=1)  # (B, T)
    return LyapunovEstimate(local[:, washout:].mean().item(), local)


def lyapunov_spectrum(
    weight: torch.Tensor,
    drive: torch.Tensor,
    leak_rate: float = 1.0,
    *,
    num_exponents: int = 5,
    washout: int = 0,
    seed: int = 0,
) -> torch.Tensor:
    """The first k exponents λ_1 ≥ … ≥ λ_k (k,) by equation (3), k = `num_exponents` ≤ N.

    Tangent vectors are columns (the column form of the row-vector recurrence), k per sequence,
    re-orthonormalised by a batched QR every step. Cost O(B·T·N²·k).
    """
    weight = weight.to(drive)
    batch, _, nodes = drive.shape
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, nodes, num_exponents)
    start = torch.randn(shape, generator=generator, dtype=torch.float64, device=generator.device).to(drive)
    tangents = torch.linalg.qr(start).Q  # (B, N, k)
    state = drive.new_zeros(batch, nodes)  # (B, N)
    logs = []
    for step in range(drive.shape[1]):
        state, output = reservoir_step(state, drive[:, step], weight, leak_rate)
        gains = (1.0 - output.square())[:, :, None]  # (B, N, 1)
        mapped = (1.0 - leak_rate) * tangents + leak_rate * gains * (weight.T @ tangents)  # J_t·Q (B, N, k)
        tangents, triangle = torch.linalg.qr(mapped)
        logs.append(triangle.diagonal(dim1=-2, dim2=-1).abs().log())  # (B, k)
    return torch.stack(logs, dim=1)[:, washout:].mean(dim=(0, 1))  # (k,)
