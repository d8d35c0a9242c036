"""What drives a reservoir in the analyses: its fixed tensors, real tokens, or i.i.d. scalar input.

Every measure in `lit_vir.analysis` takes plain tensors — W (N, N), the drive u_t + b (B, T, N), the
leak rate a — so it can be applied to any reservoir, including matrices built in a test or a notebook.
`ReservoirTensors` lifts them out of a `Reservoir` bank in float64 (long products of a matrix of
spectral radius near 1, and the ε = 1e-8 perturbations of the Lyapunov method, need the precision).

Two drives (spec `vir.md`, "The reservoir" and "Dynamics"):
- tokens: u_t = x_t·V (+ b) for real patch tokens x_t of images (B, T, D);
- i.i.d. scalar input (Jaeger 2001): u(t) ~ U[−a_u, a_u], a_u = 0.8, through a fixed 1×N input vector v,
  u_t = u(t)·v (+ b). The same protocol drives the memory capacity, so λ and MC describe one regime.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lit_vir.models.reservoir import Reservoir
from lit_vir.models.topology import input_matrix

__all__ = [
    "ReservoirTensors",
    "iid_scalar_input",
    "reservoir_tensors",
    "scalar_drive",
    "scalar_input_vector",
    "token_drive",
]


@dataclass(frozen=True)
class ReservoirTensors:
    """One reservoir's fixed tensors: W (N, N), V (D, N), b (N,) or None, and the leak rate a."""

    weight: torch.Tensor
    input_weight: torch.Tensor
    bias: torch.Tensor | None
    leak_rate: float

    @property
    def num_nodes(self) -> int:
        return self.weight.shape[0]

    def input_vector(self, seed: int = 0) -> torch.Tensor:
        """A 1×N input vector (N,) drawn like a row of V: V's density of non-zeros and its sign convention."""
        density = (self.input_weight != 0).double().mean().item()
        signed = bool((self.input_weight < 0).any())
        return scalar_input_vector(self.num_nodes, density=density, signed=signed, seed=seed).to(self.weight.device)


def reservoir_tensors(reservoir: Reservoir, index: int = 0, dtype: torch.dtype = torch.float64) -> ReservoirTensors:
    """Reservoir `index` of a bank (0..L−1) as float64 tensors on the bank's device."""
    if not 0 <= index < reservoir.num_reservoirs:
        raise IndexError(f"reservoir index {index} is outside the bank of {reservoir.num_reservoirs} reservoirs")
    bias = None if reservoir.bias is None else reservoir.bias[index].to(dtype)
    return ReservoirTensors(
        weight=reservoir.weight[index].to(dtype),
        input_weight=reservoir.input_weight[index].to(dtype),
        bias=bias,
        leak_rate=float(reservoir.leak_rate),
    )


def token_drive(tokens: torch.Tensor, input_weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """u_t + b = x_t·V + b for tokens (B, T, D) → (B, T, N), in V's dtype."""
    drive = tokens.to(input_weight) @ input_weight  # (B, T, N)
    return drive if bias is None else drive + bias


def scalar_input_vector(num_nodes: int, *, density: float = 0.05, signed: bool = False, seed: int = 0) -> torch.Tensor:
    """The fixed 1×N input vector v (N,), float64, of the i.i.d. protocol.

    Drawn by the reservoir's own input builder (`topology.input_matrix` with D = 1): round(density·N)
    non-zeros, values U[0, 1) as the reference's V (or U[−1, 1) if `signed`), from a generator seeded
    with `seed`, so the protocol is fixed independently of the model's seed.
    """
    generator = torch.Generator().manual_seed(seed)
    return input_matrix(1, num_nodes, generator, density=density, signed=signed)[0]


def iid_scalar_input(batch: int, steps: int, *, amplitude: float = 0.8, seed: int = 0) -> torch.Tensor:
    """u(t) ~ U[−amplitude, amplitude], i.i.d., float64: (B, T) independent sequences (Jaeger 2001)."""
    generator = torch.Generator().manual_seed(seed)
    draws = torch.rand(batch, steps, generator=generator, dtype=torch.float64, device=generator.device)
    return amplitude * (2.0 * draws - 1.0)


def scalar_drive(inputs: torch.Tensor, input_vector: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """u_t + b = u(t)·v + b for scalar inputs (B, T) → (B, T, N)."""
    drive = inputs.to(input_vector)[..., None] * input_vector  # (B, T, N)
    return drive if bias is None else drive + bias
