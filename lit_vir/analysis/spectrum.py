"""The eigenvalue spectrum of W and the spectral radius α = max|eig(W)| it was scaled to.

For the linearisation at h = 0 (no input, a = 1), ρ(W) < 1 is the classical sufficient-in-practice
condition for the echo-state property; the driven exponents of `lyapunov` refine it. Cost: one
N×N eigenvalue problem, O(N³), about 0.7 s in float64 at N = 1000 on one core of this project's CPU.
"""

from __future__ import annotations

import torch

__all__ = ["eigenvalue_spectrum", "spectral_radius"]


def eigenvalue_spectrum(weight: torch.Tensor) -> torch.Tensor:
    """All N eigenvalues of W (complex128, (N,)), sorted by decreasing modulus."""
    eigenvalues = torch.linalg.eigvals(weight.to(torch.float64))
    return eigenvalues[eigenvalues.abs().argsort(descending=True)]


def spectral_radius(eigenvalues: torch.Tensor) -> float:
    """ρ = max |λ_i| of a spectrum from `eigenvalue_spectrum`."""
    return eigenvalues.abs().max().item()
