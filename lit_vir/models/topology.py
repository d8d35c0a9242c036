"""Seeded, pure builders of the reservoir's fixed matrices (spec: `vir.md`, "Topology of W").

They return plain tensors so the topology can be tested and plotted without building a model
(the reservoirpy `mat_gen` idea). Every draw comes from the generator passed in, in a fixed order,
so one seed fixes W and V exactly on every process.
"""

from __future__ import annotations

import torch

from lit_vir.models.reservoir_options import ReservoirOptions

__all__ = [
    "cycle_with_jumps",
    "input_matrix",
    "nearly_fully_connected",
    "scale_to_spectral_radius",
    "signs_and_hole",
    "spectral_radius",
]


def cycle_with_jumps(
    num_nodes: int, *, cycle_weight: float, jump_weight: float, background_weight: float, jump_size: int
) -> torch.Tensor:
    """The unsigned, unscaled pattern of W: background r_k, a one-way cycle r_i, two-way jumps r_j.

    Steps 1–3 of the spec (Cycle Reservoir with Jumps, Rodan & Tiňo 2012, on a dense background).
    Row-vector convention: `W[i, j]` is the weight from node i to node j. No defaults here: the
    reference values live in `ReservoirOptions`.
    """
    weights = torch.full((num_nodes, num_nodes), background_weight, dtype=torch.float64)
    nodes = torch.arange(num_nodes)
    weights[(nodes + 1) % num_nodes, nodes] = cycle_weight  # W[i+1, i] = r_i and W[0, N-1] = r_i
    for u in range(0, num_nodes - jump_size + 1, jump_size):
        v = (u + jump_size) % num_nodes
        weights[u, v] = jump_weight
        weights[v, u] = jump_weight
    return weights


def spectral_radius(matrix: torch.Tensor) -> float:
    """ρ(W) = max |eig(W)|, computed in float64 (the scale must be exact to 1e-4 at N = 1000)."""
    return torch.linalg.eigvals(matrix.to(torch.float64)).abs().max().item()


def scale_to_spectral_radius(matrix: torch.Tensor, target: float) -> torch.Tensor:
    """W ← α·W / ρ(W) (step 6 of the spec)."""
    radius = spectral_radius(matrix)
    if radius == 0.0:
        raise ValueError("cannot scale a matrix whose spectral radius is 0 (all eigenvalues vanish)")
    return matrix * (target / radius)


def nearly_fully_connected(options: ReservoirOptions, generator: torch.Generator) -> torch.Tensor:
    """The recurrent matrix W (N×N, float64): CRJ pattern, random signs, one zero, radius α."""
    weights = cycle_with_jumps(
        options.num_nodes,
        cycle_weight=options.cycle_weight,
        jump_weight=options.jump_weight,
        background_weight=options.background_weight,
        jump_size=options.jump_size,
    )
    signs, zeroed = signs_and_hole(options.num_nodes, generator)
    weights = weights * signs
    weights.view(-1)[zeroed] = 0.0
    return scale_to_spectral_radius(weights, options.spectral_radius)


def signs_and_hole(num_nodes: int, generator: torch.Generator) -> tuple[torch.Tensor, int]:
    """The random draws of W (steps 4–5), in their fixed order: N² signs ±1, then the zeroed entry's index.

    Separate so that V can be redrawn from a reservoir's seed without rebuilding W (V is drawn next).
    """
    signs = 2 * torch.randint(0, 2, (num_nodes, num_nodes), generator=generator, dtype=torch.int64) - 1
    zeroed = int(torch.randint(0, num_nodes * num_nodes, (1,), generator=generator).item())
    return signs, zeroed


def input_matrix(
    in_features: int, num_nodes: int, generator: torch.Generator, *, density: float, signed: bool
) -> torch.Tensor:
    """The input matrix V (D×N, float64): exactly round(density·D·N) non-zeros.

    Values are U[0, 1) as in the reference, or U[−1, 1) with `signed`. The reference draws V with
    density SD·input_scaling (a `scipy.sparse.random` call; `ReservoirOptions.input_density`), which is
    why the scaling enters the density and not the values. Draw order: positions (one permutation), then values.
    """
    total = in_features * num_nodes
    nonzeros = round(density * total)
    positions = torch.randperm(total, generator=generator)[:nonzeros]
    values = torch.rand(nonzeros, generator=generator, dtype=torch.float64)
    if signed:
        values = 2.0 * values - 1.0
    matrix = torch.zeros(total, dtype=torch.float64)
    matrix[positions] = values
    return matrix.view(in_features, num_nodes)
