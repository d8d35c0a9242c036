"""Independent references for the dynamics measures of `lit_vir.analysis` (tests only): the module docstrings'
equations in numpy float64, one step at a time, and the small-world measures by networkx.

Seeded draws that define a measure (the twin's start, the tangent directions, the path sources, the random
reference graphs, the tie-breaking order) are drawn here as the docstrings specify them, from the same seeds;
everything computed from them is computed here.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
import pytest
import torch

from lit_vir.analysis import iid_scalar_input
from lit_vir.models import ViR


def reference_trajectory(weight, drive, leak_rate=1.0, bias=None, activation=np.tanh, initial=None):
    """h_t = (1 − a)·h_{t−1} + a·s_t, s_t = φ(h_{t−1}·W + u_t + b) from h_0 = `initial` (B, N) or 0: states and s_t,
    (B, T, N) each."""
    weight, drive = np.asarray(weight, dtype=np.float64), np.asarray(drive, dtype=np.float64)
    state = np.zeros((drive.shape[0], drive.shape[2])) if initial is None else np.array(initial, dtype=np.float64)
    states, outputs = np.zeros(drive.shape), np.zeros(drive.shape)
    for step in range(drive.shape[1]):
        preactivation = state @ weight + drive[:, step] + (0.0 if bias is None else np.asarray(bias, np.float64))
        outputs[:, step] = activation(preactivation)
        state = (1 - leak_rate) * state + leak_rate * outputs[:, step]
        states[:, step] = state
    return states, outputs


def reference_jacobian(weight, output, leak_rate):
    """J_t = (1 − a)·I + a·diag(1 − s_t²)·Wᵀ, the column-form Jacobian ∂h_t/∂h_{t−1} at one step's s_t (N,)."""
    weight = np.asarray(weight, dtype=np.float64)
    return (1 - leak_rate) * np.eye(len(output)) + leak_rate * np.diag(1 - output**2) @ weight.T


def reference_log_radii(weight, drive, leak_rate):
    """ln ρ(J_t) for every (sequence, step), sequence-major: (B·T,)."""
    _, outputs = reference_trajectory(weight, drive, leak_rate)
    jacobians = [reference_jacobian(weight, output, leak_rate) for output in outputs.reshape(-1, outputs.shape[-1])]
    return np.array([np.log(np.abs(np.linalg.eigvals(jacobian)).max()) for jacobian in jacobians])


def seeded_normal(*shape, seed=0):
    """The seeded float64 normal draw the estimators start their tangent directions from."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).numpy()


def reference_tangent_growth(weight, drive, leak_rate, seed=0):
    """ln ‖J_t·u_{t−1}‖ with u_t = J_t·u_{t−1}/‖J_t·u_{t−1}‖ from the seeded direction u_0: (B, T).

    The perturbation method's twin trajectory at distance ε follows this tangent map up to O(ε)."""
    _, outputs = reference_trajectory(weight, drive, leak_rate)
    batch, steps, _ = outputs.shape
    directions = seeded_normal(batch, drive.shape[2], seed=seed)
    growth = np.zeros((batch, steps))
    for sequence in range(batch):
        direction = directions[sequence] / np.linalg.norm(directions[sequence])
        for step in range(steps):
            mapped = reference_jacobian(weight, outputs[sequence, step], leak_rate) @ direction
            growth[sequence, step] = np.log(np.linalg.norm(mapped))
            direction = mapped / np.linalg.norm(mapped)
    return growth


def gram_schmidt(matrix):
    """Orthonormal columns of `matrix` (N, k) and the lengths |R_ii| they were divided by (k,)."""
    columns, lengths = [], []
    for column in matrix.T:
        for previous in columns:
            column = column - (previous @ column) * previous
        lengths.append(np.linalg.norm(column))
        columns.append(column / lengths[-1])
    return np.stack(columns, axis=1), np.array(lengths)


def reference_spectrum(weight, drive, leak_rate, num_exponents, washout, seed=0):
    """Benettin's λ_i = mean_t ln|R_t[i, i]| with Gram–Schmidt instead of a QR routine: (k,)."""
    _, outputs = reference_trajectory(weight, drive, leak_rate)
    batch, steps, nodes = outputs.shape
    starts = seeded_normal(batch, nodes, num_exponents, seed=seed)
    logs = np.zeros((batch, steps, num_exponents))
    for sequence in range(batch):
        tangents, _ = gram_schmidt(starts[sequence])
        for step in range(steps):
            mapped = reference_jacobian(weight, outputs[sequence, step], leak_rate) @ tangents
            tangents, lengths = gram_schmidt(mapped)
            logs[sequence, step] = np.log(lengths)
    return logs[:, washout:].mean(axis=(0, 1))


def reference_memory_capacity(
    weight,
    vector,
    leak_rate=1.0,
    bias=None,
    *,
    max_delay,
    washout,
    steps,
    train_sequences,
    test_sequences,
    ridge,
    amplitude,
    activation=np.tanh,
    seed,
):
    """Equation (4) of `memory.py` written out: ridge readouts per delay, corr² on the test sequences."""
    sequences = train_sequences + test_sequences
    inputs = iid_scalar_input(sequences, washout + steps, amplitude=amplitude, seed=seed).numpy()  # the protocol
    drive = inputs[:, :, None] * np.asarray(vector, dtype=np.float64)
    states, _ = reference_trajectory(weight, drive, leak_rate, bias, activation)
    start = max(washout, max_delay)
    times = range(start, washout + steps)
    features = states[:, start:]  # (S, n_s, N)
    targets = np.stack([[inputs[s, [t - k for t in times]] for k in range(1, max_delay + 1)] for s in range(sequences)])
    targets = targets.transpose(0, 2, 1)  # (S, n_s, k_max): column k − 1 is u(t − k)
    train_x = features[:train_sequences].reshape(-1, features.shape[-1])
    train_y = targets[:train_sequences].reshape(-1, max_delay)
    mean_x = train_x.mean(axis=0)
    centred_x, centred_y = train_x - mean_x, train_y - train_y.mean(axis=0)
    gram = centred_x.T @ centred_x
    regularised = gram + ridge * np.trace(gram) / len(gram) * np.eye(len(gram))
    readout = np.linalg.solve(regularised, centred_x.T @ centred_y)
    predicted = (features[train_sequences:].reshape(-1, features.shape[-1]) - mean_x) @ readout
    observed = targets[train_sequences:].reshape(-1, max_delay)
    capacity = np.zeros(max_delay)
    for delay in range(max_delay):
        p, y = predicted[:, delay] - predicted[:, delay].mean(), observed[:, delay] - observed[:, delay].mean()
        if (p @ p) * (y @ y) > 0:
            capacity[delay] = (p @ y) ** 2 / ((p @ p) * (y @ y))
    return capacity


def reference_scalar_input_vector(num_nodes: int, density: float, signed: bool, seed: int) -> np.ndarray:
    """The i.i.d. protocol's input vector v (N,) as `drives.scalar_input_vector` documents it: round(density·N)
    non-zeros at the first positions of a seeded permutation, then their values U[0, 1) (U[−1, 1) if signed)."""
    generator = torch.Generator().manual_seed(seed)
    count = round(density * num_nodes)
    positions = torch.randperm(num_nodes, generator=generator)[:count].numpy()
    values = torch.rand(count, generator=generator, dtype=torch.float64).numpy()
    vector = np.zeros(num_nodes)
    vector[positions] = 2 * values - 1 if signed else values
    return vector


def reference_echo_state_distance(weight, drive, leak_rate=1.0, seed=0):
    """‖h_t − h'_t‖ for t = 0..T (B, T + 1): h_0 = 0 and h'_0 ~ U[−1, 1]^N drawn from `seed` (float64)."""
    drive = np.asarray(drive, dtype=np.float64)
    generator = torch.Generator().manual_seed(seed)
    other_start = 2 * torch.rand(drive.shape[0], drive.shape[2], generator=generator, dtype=torch.float64).numpy() - 1
    states, _ = reference_trajectory(weight, drive, leak_rate)
    other, _ = reference_trajectory(weight, drive, leak_rate, initial=other_start)
    distance = np.linalg.norm(states - other, axis=-1)
    return np.concatenate([np.linalg.norm(other_start, axis=-1, keepdims=True), distance], axis=1)


def reference_state_statistics(states, outputs) -> dict[str, float]:
    """mean |h|, the sample standard deviation of h, the share of |h| > 0.99 and the mean gain 1 − s_t²."""
    states, outputs = np.asarray(states, dtype=np.float64), np.asarray(outputs, dtype=np.float64)
    return {
        "mean_abs": np.abs(states).mean(),
        "std": states.std(ddof=1),
        "saturated_fraction": (np.abs(states) > 0.99).mean(),
        "mean_gain": (1 - outputs**2).mean(),
    }


# --- small-world measures: the graphs built here, C and L by networkx ------------------------------------------


def reference_edge_strength(weight) -> np.ndarray:
    """s_ij = (|W_ij| + |W_ji|)/2 with a zero diagonal."""
    magnitude = np.abs(np.asarray(weight, dtype=np.float64))
    strength = (magnitude + magnitude.T) / 2
    np.fill_diagonal(strength, 0.0)
    return strength


def reference_strongest_edges(strength, k: int, seed: int = 0) -> np.ndarray:
    """Node i linked to its k strongest partners, ties in the order of a seeded shuffle of each row (the order of
    argsort of U[0, 1) draws (N, N) from `seed`), union over both ends, only where s_ij > 0."""
    strength = np.asarray(strength, dtype=np.float64)
    nodes = len(strength)
    draws = torch.rand(nodes, nodes, generator=torch.Generator().manual_seed(seed)).numpy()
    adjacency = np.zeros_like(strength)
    for node in range(nodes):
        shuffled = [int(partner) for partner in np.argsort(draws[node], kind="stable") if partner != node]
        for partner in sorted(shuffled, key=lambda other: -strength[node, other])[:k]:  # sorted() is stable
            adjacency[node, partner] = adjacency[partner, node] = 1.0
    return adjacency * (strength > 0)


def as_graph(weights) -> nx.Graph:
    """The undirected graph of a symmetric weight matrix, with `weight` w and `distance` 1/w on every edge."""
    weights = np.asarray(weights, dtype=np.float64)
    graph = nx.Graph()
    graph.add_nodes_from(range(len(weights)))
    for i, j in zip(*np.nonzero(np.triu(weights, k=1)), strict=True):
        graph.add_edge(int(i), int(j), weight=weights[i, j], distance=1 / weights[i, j])
    return graph


def upper_edges(weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs i < j in row-major order with their weights, and the weights of the edges among them."""
    rows, columns = np.triu_indices(len(weights), k=1)
    values = np.asarray(weights, dtype=np.float64)[rows, columns]
    return rows, columns, values[values > 0]


def reference_random_graph(weights, generator: torch.Generator) -> np.ndarray:
    """G(N, m) with the same weights: m pairs i < j at the first m positions of a permutation of all pairs, then
    the weights (row-major) in the order of a second permutation."""
    rows, columns, values = upper_edges(weights)
    pairs = torch.randperm(len(rows), generator=generator)[: len(values)].numpy()
    order = torch.randperm(len(values), generator=generator).numpy()
    graph = np.zeros_like(np.asarray(weights, dtype=np.float64))
    graph[rows[pairs], columns[pairs]] = graph[columns[pairs], rows[pairs]] = values[order]
    return graph


def reference_ring_lattice(weights) -> np.ndarray:
    """The weights, strongest first, on the ring pairs (i, i + d mod N) for d = 1, 2, …, i = 0..N−1 (at the
    diameter d = N/2 of an even ring only i < N/2, each pair once)."""
    nodes = len(weights)
    values = np.sort(upper_edges(weights)[2])[::-1]
    pairs = [
        (i, (i + d) % nodes) for d in range(1, nodes // 2 + 1) for i in range(nodes // 2 if 2 * d == nodes else nodes)
    ]
    graph = np.zeros((nodes, nodes))
    for (i, j), value in zip(pairs, values, strict=False):
        graph[i, j] = graph[j, i] = value
    return graph


def clustering_and_path_length(weights, sources) -> tuple[float, float]:
    """networkx's weighted clustering (Onnela et al.) averaged over nodes, and the mean Dijkstra distance (edge
    distance 1/w) from the sources to every node they reach."""
    graph = as_graph(weights)
    lengths = [
        length
        for source in sources
        for target, length in nx.single_source_dijkstra_path_length(graph, int(source), weight="distance").items()
        if target != source
    ]
    return nx.average_clustering(graph, weight="weight"), (float(np.mean(lengths)) if lengths else float("inf"))


@dataclass(frozen=True)
class ReferenceSmallWorld:
    clustering: float
    path_length: float
    random_clustering: float
    random_path_length: float
    lattice_clustering: float
    lattice_path_length: float
    sigma: float
    omega: float
    edges: int


def reference_small_world(weights, num_references: int = 2, path_sources: int = 100, seed: int = 0):
    """C, L (networkx) of the graph, of `num_references` random graphs (averaged) and of the ring lattice;
    σ = (C/C_r)/(L/L_r) and ω = L_r/L − C/C_l. One generator seeded `seed` draws the sources (the first
    min(path_sources, N) of a permutation of the nodes), then each random graph."""
    weights = np.asarray(weights, dtype=np.float64)
    generator = torch.Generator().manual_seed(seed)
    sources = torch.randperm(len(weights), generator=generator)[: min(path_sources, len(weights))].tolist()
    c, length = clustering_and_path_length(weights, sources)
    randoms = [
        clustering_and_path_length(reference_random_graph(weights, generator), sources) for _ in range(num_references)
    ]
    c_r, length_r = np.mean(randoms, axis=0)
    c_l, length_l = clustering_and_path_length(reference_ring_lattice(weights), sources)
    sigma, omega = (c / c_r) / (length / length_r), length_r / length - c / c_l
    return ReferenceSmallWorld(c, length, c_r, length_r, c_l, length_l, sigma, omega, len(upper_edges(weights)[2]))


# --- a whole core, as `lit-vir dynamics` and the ReservoirDynamics callback report it ------------------------------

# memory_capacity's protocol apart from k_max and the seed (its documented defaults)
MEMORY_PROTOCOL = dict(steps=1000, train_sequences=8, test_sequences=2, ridge=1e-6, amplitude=0.8)


def reference_core_fields(
    weight,
    input_weight,
    bias,
    leak_rate: float,
    tokens=None,
    *,
    max_delay: int = 200,
    path_sources: int = 100,
    strongest_edges: int = 10,
    num_references: int = 2,
    jacobian_samples: int = 8,
    iid_sequences: int = 4,
    iid_steps: int = 300,
    iid_washout: int = 50,
    seed: int = 0,
) -> dict:
    """Every number field of one core's record (`lit_vir.analysis.report`), computed here: the drive x_t·V + b of the
    core's tokens (B, T, D), or without tokens u(t)·v + b of the i.i.d. protocol (u(t) = 0.8·(2·U − 1) from `seed`,
    v drawn like a row of V); the measures by the module docstrings' equations, the graphs by networkx."""
    weight, input_weight = np.asarray(weight, dtype=np.float64), np.asarray(input_weight, dtype=np.float64)
    bias = np.zeros(len(weight)) if bias is None else np.asarray(bias, dtype=np.float64)
    density, signed = (input_weight != 0).mean(), bool((input_weight < 0).any())
    vector = reference_scalar_input_vector(len(weight), density, signed, seed)
    if tokens is None:
        uniform = torch.rand(
            iid_sequences, iid_steps, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
        )
        drive, washout = 0.8 * (2 * uniform.numpy() - 1)[:, :, None] * vector + bias, iid_washout
    else:
        drive, washout = np.asarray(tokens, dtype=np.float64) @ input_weight + bias, 0
    states, outputs = reference_trajectory(weight, drive, leak_rate)
    after = outputs[:, washout:].reshape(-1, len(weight))  # (B·T', N), sequence-major
    chosen = np.round(np.linspace(0, len(after) - 1, min(jacobian_samples, len(after)))).astype(int)
    radii = [np.abs(np.linalg.eigvals(reference_jacobian(weight, after[i], leak_rate))).max() for i in chosen]
    curve = reference_echo_state_distance(weight, drive, leak_rate, seed=seed).mean(axis=0)
    capacity = reference_memory_capacity(
        weight, vector, leak_rate, bias, max_delay=max_delay, washout=max_delay, seed=seed, **MEMORY_PROTOCOL
    )
    strength = reference_edge_strength(weight)
    graphs = {
        "weighted": reference_small_world(strength, num_references, path_sources, seed),
        "strongest": reference_small_world(
            reference_strongest_edges(strength, strongest_edges, seed), num_references, path_sources, seed
        ),
    }
    return {
        "num_nodes": len(weight),
        "lyapunov_jacobian": float(np.mean(np.log(radii))),
        "lyapunov_perturbation": float(reference_tangent_growth(weight, drive, leak_rate, seed)[:, washout:].mean()),
        "memory_capacity": float(capacity.sum()),
        "memory_capacity_per_delay": capacity.tolist(),
        "spectral_radius": float(np.abs(np.linalg.eigvals(weight)).max()),
        "echo_state_distance": float(curve[-1] / curve[0]),
        "echo_state_curve": curve.tolist(),
        **{f"state_{name}": float(value) for name, value in reference_state_statistics(states, outputs).items()},
        **{f"{graph}_{name}": value for graph, measures in graphs.items() for name, value in vars(measures).items()},
    }


def assert_core_fields_match(record: dict, expected: dict, relative: float = 1e-7) -> None:
    """Each field to its method's accuracy: ln ρ(J_t) from float32 eigensolves (1e-5), the twin trajectory at
    ε = 1e-8 (1e-6), everything else float64 sums in another order (`relative`: 1e-6 for TensorBoard's float32)."""
    loose = {"lyapunov_jacobian": 1e-5, "lyapunov_perturbation": 1e-6}
    for name, value in expected.items():
        tolerance = dict(abs=loose[name]) if name in loose else dict(rel=relative, abs=1e-12)
        assert record[name] == pytest.approx(value, **tolerance), name


def core_tokens(model: ViR, images: torch.Tensor) -> list[torch.Tensor]:
    """What each core reads, computed here: the patch tokens for every parallel core; in serial mode core i
    reads core i − 1's outputs z (its readout of tokens and states, then its block)."""
    with torch.no_grad():
        tokens = model.eval().embed(images)  # (B, T, D)
        if model.mode == "parallel":
            return [tokens] * model.depth
        read = []
        for reservoir, readout, block in zip(model.reservoirs, model.readouts, model.blocks, strict=True):
            read.append(tokens)
            tokens = block(readout(tokens, reservoir(tokens)[0]))
        return read


def expected_records(model: ViR, images: torch.Tensor | None, **budgets) -> list[dict]:
    """Every core's fields computed here from the model's W, V, b and a, and the tokens each core reads."""
    tensors = [(bank, index) for bank in model.reservoirs for index in range(bank.num_reservoirs)]
    tokens = [None] * len(tensors) if images is None else core_tokens(model, images)
    return [
        reference_core_fields(
            bank.weight[index],
            bank.input_weight[index],
            None if bank.bias is None else bank.bias[index],
            bank.leak_rate,
            None if read is None else read.double(),
            **budgets,
        )
        for (bank, index), read in zip(tensors, tokens, strict=True)
    ]
