"""Seeded, pure builders of the reservoir's fixed matrices (spec: `vir.md`, "Topology of W"; `docs/topology.md`).

They return plain tensors so the topology can be tested and plotted without building a model
(the reservoirpy `mat_gen` idea). Every draw comes from the generator passed in, in a fixed order,
so one seed fixes W and V exactly on every process.

Row-vector convention, as in the recurrence h_t = tanh(h_{t−1}·W + u_t + b): `W[i, j]` is the link from node i
to node j (reservoirpy and most papers write W·x, the transpose). One builder per `ReservoirOptions.topology`
(`BUILDERS`), each returning W (N, N) in float64 at spectral radius α:

    cycle_jumps    the reference's "nearly fully connected" W: CRJ pattern on a dense background, signs, one hole
    random_sparse  the classic echo-state W (Jaeger 2001): round(density·N²) links at random places, N(0, 1) or
                   U[−1, 1) values, scaled to α
    ring           the simple cycle reservoir (Rodan & Tiňo 2011): W[i, i+1 mod N] = α, a permutation times α
    delay_line     the delay line reservoir (Rodan & Tiňo 2011): W[i, i+1] = α for i < N−1, no link back; nilpotent
                   (every eigenvalue 0), so α is its links' weight (and its largest singular value), not its ρ
    small_world    Watts & Strogatz (1998): a ring lattice of degree k with each link rewired with probability p,
                   both directions of a link weighted independently (normal or uniform), scaled to α
    orthogonal     a Haar-random orthogonal Q (QR of a Gaussian matrix, signs fixed; Mezzadri 2007) times α:
                   every eigenvalue of Q has modulus 1, so ρ(α·Q) = α and WᵀW = α²·I

Ring, delay line and orthogonal know their radius, so they are multiplied by α rather than scaled by an
eigensolve (exact, and O(N²) instead of O(N³)).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lit_vir.checks import ConfigError
from lit_vir.models.reservoir_options import ReservoirOptions

__all__ = [
    "BUILDERS",
    "cycle_with_jumps",
    "delay_line",
    "has_cycle",
    "input_matrix",
    "link_weights",
    "nearly_fully_connected",
    "random_orthogonal",
    "random_sparse",
    "recurrent_matrix",
    "ring",
    "ring_lattice",
    "scale_to_spectral_radius",
    "signed_cycle_with_jumps",
    "signs_and_hole",
    "spectral_radius",
    "watts_strogatz",
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
    signs, hole = signs_and_hole(options.num_nodes, generator)
    return signed_cycle_with_jumps(options, signs, hole)


def signed_cycle_with_jumps(options: ReservoirOptions, signs: torch.Tensor, hole: int) -> torch.Tensor:
    """Steps 1–6 given the random draws of steps 4–5 (`signs_and_hole`): the pattern times the signs, the hole,
    scaled to α. Separate so that a reservoir can draw V right after the signs whatever its topology."""
    weights = cycle_with_jumps(
        options.num_nodes,
        cycle_weight=options.cycle_weight,
        jump_weight=options.jump_weight,
        background_weight=options.background_weight,
        jump_size=options.jump_size,
    )
    weights = weights * signs
    weights.view(-1)[hole] = 0.0
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


def link_weights(count: int, generator: torch.Generator, distribution: str) -> torch.Tensor:
    """`count` values (float64) of W's links before scaling: N(0, 1) ("normal") or U[−1, 1) ("uniform")."""
    if distribution == "normal":
        return torch.randn(count, generator=generator, dtype=torch.float64)
    return 2.0 * torch.rand(count, generator=generator, dtype=torch.float64) - 1.0


def random_sparse(num_nodes: int, generator: torch.Generator, *, density: float, distribution: str) -> torch.Tensor:
    """The unscaled classic echo-state W (N, N): exactly round(density·N²) links, placed by one permutation of the
    N² entries, then their values (the draw order of `input_matrix`)."""
    total = num_nodes * num_nodes
    links = round(density * total)
    positions = torch.randperm(total, generator=generator)[:links]
    matrix = torch.zeros(total, dtype=torch.float64)
    matrix[positions] = link_weights(links, generator, distribution)
    return matrix.view(num_nodes, num_nodes)


def ring(num_nodes: int) -> torch.Tensor:
    """The unscaled simple cycle W (N, N): node i → node i + 1 (mod N) with weight 1, a cyclic permutation."""
    nodes = torch.arange(num_nodes)
    matrix = torch.zeros(num_nodes, num_nodes, dtype=torch.float64)
    matrix[nodes, (nodes + 1) % num_nodes] = 1.0
    return matrix


def delay_line(num_nodes: int) -> torch.Tensor:
    """The unscaled delay line W (N, N): node i → node i + 1 with weight 1 for i < N − 1 (the ring without the
    link N − 1 → 0), strictly upper triangular."""
    nodes = torch.arange(num_nodes - 1)
    matrix = torch.zeros(num_nodes, num_nodes, dtype=torch.float64)
    matrix[nodes, nodes + 1] = 1.0
    return matrix


def ring_lattice(num_nodes: int, degree: int) -> torch.Tensor:
    """The binary, symmetric adjacency (N, N) of the ring lattice: node i linked to i ± 1, …, i ± k/2 (mod N)."""
    nodes = torch.arange(num_nodes)
    adjacency = torch.zeros(num_nodes, num_nodes, dtype=torch.bool)
    for offset in range(1, degree // 2 + 1):
        adjacency[nodes, (nodes + offset) % num_nodes] = True
        adjacency[(nodes + offset) % num_nodes, nodes] = True
    return adjacency


def watts_strogatz(
    num_nodes: int, degree: int, rewiring_probability: float, generator: torch.Generator
) -> torch.Tensor:
    """The binary, symmetric adjacency (N, N) of a Watts–Strogatz graph (Watts & Strogatz 1998).

    Start from `ring_lattice`; for each offset j = 1..k/2 and each node u in turn, with probability p move the
    link u — u+j to u — w, w uniform among the nodes that are neither u nor already linked to u (a node linked to
    every other keeps its link). The number of links, N·k/2, is kept; p = 0 leaves the lattice. The algorithm of
    networkx's `watts_strogatz_graph`, drawing from `generator`: one uniform per lattice link, then the targets.
    The link u — u+j is always there when its turn comes: only its own turn moves it, and a moved link never lands
    on a lattice place not visited yet (that place is still linked, so it is not a candidate).
    """
    adjacency = ring_lattice(num_nodes, degree)
    for offset in range(1, degree // 2 + 1):
        for u in range(num_nodes):
            if torch.rand(1, generator=generator).item() >= rewiring_probability:
                continue
            v = (u + offset) % num_nodes
            candidates = (~adjacency[u]).nonzero().flatten()
            candidates = candidates[candidates != u]
            if len(candidates) == 0:
                continue
            w = int(candidates[torch.randint(len(candidates), (1,), generator=generator)].item())
            adjacency[u, v] = adjacency[v, u] = False
            adjacency[u, w] = adjacency[w, u] = True
    return adjacency


def random_orthogonal(num_nodes: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-distributed orthogonal Q (N, N), float64: Q of the QR factorisation of an N(0, 1) matrix, each column
    multiplied by the sign of R's diagonal (without it Q is not uniform on O(N); Mezzadri 2007)."""
    gaussian = torch.randn(num_nodes, num_nodes, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    return q * torch.sign(r.diagonal())


def has_cycle(matrix: torch.Tensor) -> bool:
    """Whether the directed graph of W's non-zeros has a cycle. Without one W is nilpotent (ρ = 0, nothing to
    scale), and an eigensolve cannot tell: a nilpotent chain of length m has computed eigenvalues of size
    ε^(1/m), not 0. Peels off nodes without incoming links until none is left (acyclic) or none can be peeled."""
    links = matrix != 0
    incoming = links.sum(dim=0)
    alive = torch.ones(matrix.shape[0], dtype=torch.bool)
    while True:
        sources = alive & (incoming == 0)
        if not bool(sources.any()):
            return bool(alive.any())
        alive &= ~sources
        incoming = incoming - links[sources].sum(dim=0)


def _cycle_jumps(options: ReservoirOptions, generator: torch.Generator) -> torch.Tensor:
    return nearly_fully_connected(options, generator)


def _random_sparse(options: ReservoirOptions, generator: torch.Generator) -> torch.Tensor:
    weights = random_sparse(
        options.num_nodes, generator, density=options.density, distribution=options.weight_distribution
    )
    if not has_cycle(weights):
        links = int(torch.count_nonzero(weights))
        raise ConfigError(
            f"Reservoir: random_sparse W with density = {options.density} at num_nodes = {options.num_nodes} "
            f"({links} links) has no cycle, so every eigenvalue is 0 and it cannot be scaled to spectral_radius "
            f"{options.spectral_radius}. Raise density (about 1/N gives each node one link on average)."
        )
    return scale_to_spectral_radius(weights, options.spectral_radius)


def _ring(options: ReservoirOptions, generator: torch.Generator) -> torch.Tensor:
    return options.spectral_radius * ring(options.num_nodes)  # a permutation: every |eigenvalue| is 1


def _delay_line(options: ReservoirOptions, generator: torch.Generator) -> torch.Tensor:
    return options.spectral_radius * delay_line(options.num_nodes)  # nilpotent: α is the links' weight


def _small_world(options: ReservoirOptions, generator: torch.Generator) -> torch.Tensor:
    adjacency = watts_strogatz(options.num_nodes, options.degree, options.rewiring_probability, generator)
    weights = torch.zeros(adjacency.shape, dtype=torch.float64)
    weights[adjacency] = link_weights(int(adjacency.sum()), generator, options.weight_distribution)
    return scale_to_spectral_radius(weights, options.spectral_radius)


def _orthogonal(options: ReservoirOptions, generator: torch.Generator) -> torch.Tensor:
    return options.spectral_radius * random_orthogonal(options.num_nodes, generator)  # every |eigenvalue| is 1


# topology name → W (N, N) float64 at spectral radius α, from the options and a seeded generator.
BUILDERS: dict[str, Callable[[ReservoirOptions, torch.Generator], torch.Tensor]] = {
    "cycle_jumps": _cycle_jumps,
    "random_sparse": _random_sparse,
    "ring": _ring,
    "delay_line": _delay_line,
    "small_world": _small_world,
    "orthogonal": _orthogonal,
}


def recurrent_matrix(options: ReservoirOptions, generator: torch.Generator) -> torch.Tensor:
    """W (N, N, float64) of `options.topology`, drawn from `generator`. (A `Reservoir` draws V and b between
    cycle_jumps' draws and the other topologies' draws: `reservoir.draw_matrices`.)"""
    return BUILDERS[options.topology](options, generator)
