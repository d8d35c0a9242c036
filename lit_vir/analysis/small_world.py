"""Small-world measures of the reservoir graph (Watts & Strogatz 1998; Humphries & Gurney 2008;
Telesford et al. 2011), on graphs where they mean something.

The reference W is complete but for one entry, so on its binary graph C = L = 1 and every measure is
trivial (spec `vir.md`, "Dynamics"). The two graphs used instead, both undirected, with edge strength
s_ij = (|W_ij| + |W_ji|)/2:

- the weighted graph: every pair with s_ij > 0, weight s_ij, path distance 1/s_ij;
- the strongest-edges graph: binary, node i linked to its k strongest partners (union over both ends).
  The reference's |W| takes only three values (jumps r_j, background r_k, cycle r_i), so most of those
  choices are ties; ties are broken by a seeded random order, never by index (which would make hubs).

Measures, for weights w (binary graphs: w ∈ {0, 1}):

    C = mean_i c_i,  c_i = Σ_jk (ŵ_ij·ŵ_jk·ŵ_ki)^{1/3} / (k_i(k_i − 1)),  ŵ = w / max w            (5)
        (Onnela et al. 2005; networkx's weighted clustering; the usual clustering when binary)
    L = mean shortest-path distance over reachable pairs, edge distance 1/w (hops when binary)       (6)
    σ = (C / C_r) / (L / L_r)      (Humphries & Gurney 2008; small-world if σ > 1)                    (7)
    ω = L_r / L − C / C_l          (Telesford et al. 2011; ≈ 0 small-world, −1 lattice, +1 random)    (8)

References with the same N and the same multiset of edge weights: random — the weights in random order on
m node pairs drawn uniformly (an Erdős–Rényi G(N, m) graph); lattice — the weights in decreasing order on
the ring pairs at distance 1, 1, …, 2, 2, … (a ring lattice, strongest links nearest; Muldoon et al. 2016).

Cost: C is one N×N product, O(N³); L runs a dense Dijkstra from `path_sources` sampled nodes
(all if fewer): N rounds of O(S·N). At N = 1000 with 100 sources, each graph plus its 2 random references
and its lattice takes about 3.5 s on one core of this project's 2-core CPU (7 s for both graphs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "SmallWorld",
    "characteristic_path_length",
    "clustering",
    "edge_strength",
    "lattice_reference",
    "random_reference",
    "reservoir_small_world",
    "shortest_path_lengths",
    "small_world",
    "strongest_edges",
]


@dataclass(frozen=True)
class SmallWorld:
    """C, L of a graph, of its random (C_r, L_r) and lattice (C_l, L_l) references, σ (7) and ω (8)."""

    clustering: float
    path_length: float
    random_clustering: float
    random_path_length: float
    lattice_clustering: float
    lattice_path_length: float
    sigma: float
    omega: float
    edges: int

    @classmethod
    def of(
        cls, graph: tuple[float, float], random: tuple[float, float], lattice: tuple[float, float], edges: int
    ) -> SmallWorld:
        """The record of (C, L) measured on the graph and on its random and lattice references, with
        σ = (C/C_r)/(L/L_r) (7) and ω = L_r/L − C/C_l (8); NaN where a reference has no triangles (C_r or C_l = 0,
        as for a ring or a delay line and their references), since a ratio to 0 says nothing."""
        (c, length), (c_r, length_r), (c_l, length_l) = graph, random, lattice
        sigma = _ratio(_ratio(c, c_r), _ratio(length, length_r))
        omega = _ratio(length_r, length) - _ratio(c, c_l)
        return cls(c, length, c_r, length_r, c_l, length_l, sigma, omega, edges)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator != 0 else float("nan")


def edge_strength(weight: torch.Tensor) -> torch.Tensor:
    """s_ij = (|W_ij| + |W_ji|)/2 with a zero diagonal: the undirected weighted graph of W, (N, N) float64."""
    magnitude = weight.to(torch.float64).abs()
    strength = (magnitude + magnitude.T) / 2
    return strength.fill_diagonal_(0.0)


def strongest_edges(strength: torch.Tensor, k: int, *, seed: int = 0) -> torch.Tensor:
    """The binary graph (N, N) linking each node to its k strongest partners, ties in seeded random order."""
    generator = torch.Generator().manual_seed(seed)
    nodes = strength.shape[0]
    draws = torch.rand(nodes, nodes, generator=generator, device=generator.device)
    shuffled = draws.argsort(dim=1).to(strength.device)  # (N, N)
    itself = shuffled == torch.arange(nodes, device=strength.device)[:, None]
    candidates = strength.gather(1, shuffled).masked_fill(itself, -1.0)  # (N, N) in shuffled order
    ranked = candidates.argsort(dim=1, descending=True, stable=True)[:, :k]  # (N, k), random among ties
    chosen = shuffled.gather(1, ranked)  # (N, k) partner indices
    adjacency = torch.zeros_like(strength)
    adjacency.scatter_(1, chosen, 1.0)
    adjacency = torch.maximum(adjacency, adjacency.T) * (strength > 0)
    return adjacency.fill_diagonal_(0.0)


def clustering(weights: torch.Tensor) -> torch.Tensor:
    """c_i of equation (5) for a symmetric weight matrix (N, N) with zero diagonal → (N,). O(N³)."""
    weights = weights.to(torch.float64)
    roots = (weights / weights.max()).pow(1.0 / 3.0)  # (N, N): ŵ^{1/3}
    triangles = ((roots @ roots) * roots).sum(dim=1)  # diag(ŵ^{1/3} cubed), ordered pairs (j, k)
    degree = (weights > 0).sum(dim=1).double()
    pairs = degree * (degree - 1)
    return torch.where(pairs > 0, triangles / pairs.clamp_min(1), torch.zeros_like(triangles))


def shortest_path_lengths(weights: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """Distances (S, N) from each source to every node, edge distance 1/w (inf where unreachable).

    A dense Dijkstra run for all S sources at once: N rounds of O(S·N).
    """
    weights = weights.to(torch.float64)
    distance = torch.where(weights > 0, 1.0 / weights, torch.full_like(weights, float("inf")))  # (N, N)
    rows = torch.arange(len(sources), device=weights.device)
    found = torch.full((len(sources), weights.shape[0]), float("inf"), dtype=torch.float64, device=weights.device)
    found[rows, sources] = 0.0
    settled = torch.zeros_like(found, dtype=torch.bool)
    for _ in range(weights.shape[0]):
        nearest = found.masked_fill(settled, float("inf")).argmin(dim=1)  # (S,)
        settled[rows, nearest] = True
        found = torch.minimum(found, found[rows, nearest, None] + distance[nearest])  # (S, N)
    return found


def characteristic_path_length(weights: torch.Tensor, sources: torch.Tensor) -> float:
    """L of equation (6): the mean finite distance from the sources to the other nodes."""
    lengths = shortest_path_lengths(weights, sources)
    reachable = torch.isfinite(lengths) & (lengths > 0)
    return lengths[reachable].mean().item() if reachable.any() else float("inf")


def _edge_weights(weights: torch.Tensor) -> torch.Tensor:
    rows, columns = torch.triu_indices(*weights.shape, offset=1, device=weights.device)
    values = weights[rows, columns]
    return values[values > 0]  # (m,)


def _place(nodes: int, rows: torch.Tensor, columns: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    graph = torch.zeros(nodes, nodes, dtype=torch.float64, device=values.device)
    graph[rows, columns] = values
    graph[columns, rows] = values
    return graph


def random_reference(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The graph's edge weights, shuffled, on m node pairs drawn uniformly: G(N, m) with the same weights."""
    nodes = weights.shape[0]
    values = _edge_weights(weights)
    rows, columns = torch.triu_indices(nodes, nodes, offset=1, device=generator.device)
    pairs = torch.randperm(len(rows), generator=generator, device=generator.device)[: len(values)]
    order = torch.randperm(len(values), generator=generator, device=generator.device).to(values.device)
    return _place(nodes, rows[pairs].to(values.device), columns[pairs].to(values.device), values[order])


def lattice_reference(weights: torch.Tensor) -> torch.Tensor:
    """The graph's edge weights, strongest first, on ring pairs at distance 1, 1, …, 2, 2, …: a ring lattice."""
    nodes = weights.shape[0]
    values = _edge_weights(weights).sort(descending=True).values
    rows, columns = [], []
    for step in range(1, nodes // 2 + 1):
        count = nodes // 2 if 2 * step == nodes else nodes  # the diameter pairs appear once
        starts = torch.arange(count, device=values.device)
        rows.append(starts)
        columns.append((starts + step) % nodes)
    return _place(nodes, torch.cat(rows)[: len(values)], torch.cat(columns)[: len(values)], values)


def small_world(
    weights: torch.Tensor, *, num_references: int = 2, path_sources: int = 100, seed: int = 0
) -> SmallWorld:
    """C, L, σ and ω (equations 5–8) of an undirected graph given by its weights (N, N): symmetric, w ≥ 0 (0: no
    edge), zero diagonal (no self-loops), as `edge_strength` and `strongest_edges` make them.

    Path lengths are sampled from `path_sources` seeded random nodes (the same for every reference);
    C_r, L_r average `num_references` random references; the lattice reference is deterministic.
    """
    weights = weights.to(torch.float64)
    generator = torch.Generator().manual_seed(seed)
    nodes = weights.shape[0]
    sources = torch.randperm(nodes, generator=generator, device=generator.device)[: min(path_sources, nodes)]
    sources = sources.to(weights.device)

    def measures(graph: torch.Tensor) -> tuple[float, float]:
        return clustering(graph).mean().item(), characteristic_path_length(graph, sources)

    graph = measures(weights)
    random_pairs = [measures(random_reference(weights, generator)) for _ in range(num_references)]
    random = tuple(sum(values) / num_references for values in zip(*random_pairs, strict=True))  # (C_r, L_r)
    lattice = measures(lattice_reference(weights))
    return SmallWorld.of(graph, random, lattice, edges=len(_edge_weights(weights)))


def reservoir_small_world(
    weight: torch.Tensor,
    *,
    strongest: int = 10,
    num_references: int = 2,
    path_sources: int = 100,
    seed: int = 0,
) -> dict[str, SmallWorld]:
    """Both graphs of the module docstring for W (N, N): {"weighted": …, "strongest": …}."""
    strength = edge_strength(weight)
    options = dict(num_references=num_references, path_sources=path_sources, seed=seed)
    return {
        "weighted": small_world(strength, **options),
        "strongest": small_world(strongest_edges(strength, strongest, seed=seed), **options),
    }
