"""The dynamics measures of `lit_vir.analysis` against what theory, networkx and the spec say they must give."""

from __future__ import annotations

import math

import networkx as nx
import pytest
import torch

from lit_vir.analysis import (
    echo_state_distance,
    eigenvalue_spectrum,
    iid_scalar_input,
    lyapunov_jacobian,
    lyapunov_perturbation,
    lyapunov_spectrum,
    memory_capacity,
    reservoir_cores,
    reservoir_tensors,
    run_reservoir,
    scalar_drive,
    scalar_input_vector,
    small_world,
    spectral_radius,
    state_statistics,
)
from lit_vir.analysis.small_world import (
    characteristic_path_length,
    clustering,
    edge_strength,
    reservoir_small_world,
    strongest_edges,
)
from lit_vir.models import Reservoir, ViR
from lit_vir.models.reservoir_options import ReservoirOptions
from lit_vir.models.topology import nearly_fully_connected


def reference_topology(num_nodes: int, spectral_radius: float = 0.9, seed: int = 42) -> torch.Tensor:
    """W of the spec at a smaller N (jump size scaled like 137/1000)."""
    jump_size = max(2, round(0.137 * num_nodes))
    generator = torch.Generator().manual_seed(seed)
    options = ReservoirOptions(num_nodes=num_nodes, jump_size=jump_size, spectral_radius=spectral_radius)
    return nearly_fully_connected(options, generator)


def orthogonal(num_nodes: int, seed: int = 0) -> torch.Tensor:
    gaussian = torch.randn(num_nodes, num_nodes, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.linalg.qr(gaussian).Q


def iid_drive(weight: torch.Tensor, amplitude: float = 0.8, sequences: int = 4, steps: int = 300) -> torch.Tensor:
    vector = scalar_input_vector(weight.shape[0], density=0.05, seed=0)
    return scalar_drive(iid_scalar_input(sequences, steps, amplitude=amplitude, seed=1), vector)


def as_matrix(graph: nx.Graph, weight: str | None = None) -> torch.Tensor:
    return torch.tensor(nx.to_numpy_array(graph, weight=weight))


# --- memory capacity -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("activation", "input_scale"), [("identity", 1.0), ("tanh", 0.01)])
def test_memory_capacity_of_a_near_linear_orthogonal_reservoir_approaches_n(activation, input_scale):
    nodes = 50
    vector = input_scale * scalar_input_vector(nodes, density=1.0, signed=True, seed=1)
    capacity = memory_capacity(0.95 * orthogonal(nodes), vector, activation=activation, max_delay=200)
    assert 0.9 * nodes <= capacity.total <= nodes
    assert capacity.per_delay[:10].min() > 0.95  # the recent past is recalled almost perfectly


@pytest.mark.parametrize(
    ("name", "weight", "activation"),
    [
        ("linear orthogonal, α 0.99", 0.99 * orthogonal(20, seed=3), "identity"),
        ("reference topology, α 0.9", reference_topology(20), "tanh"),
        ("reference topology, α 1.5", reference_topology(20, spectral_radius=1.5), "tanh"),
    ],
)
def test_memory_capacity_never_exceeds_n(name, weight, activation):
    nodes = weight.shape[0]
    vector = scalar_input_vector(nodes, density=1.0, signed=True, seed=2)
    capacity = memory_capacity(weight, vector, activation=activation, max_delay=3 * nodes, washout=3 * nodes)
    assert capacity.per_delay.shape == (3 * nodes,)
    assert 0.0 < capacity.total <= nodes, name
    assert ((capacity.per_delay >= 0) & (capacity.per_delay <= 1)).all()


def test_memory_capacity_grows_when_the_input_is_near_linear():
    weight = reference_topology(100)
    vector = scalar_input_vector(100, density=0.05, seed=0)
    saturating = memory_capacity(weight, 10.0 * vector, max_delay=60).total
    near_linear = memory_capacity(weight, 0.1 * vector, max_delay=60).total
    assert near_linear > saturating + 5


# --- Lyapunov exponents ----------------------------------------------------------------------------------------


def test_jacobian_and_perturbation_methods_agree_and_are_negative_at_alpha_09():
    weight = reference_topology(200)
    drive = iid_drive(weight)
    jacobian = lyapunov_jacobian(weight, drive, washout=50, samples=16)
    perturbation = lyapunov_perturbation(weight, drive, washout=50)
    assert jacobian.local.shape == (16,) and perturbation.local.shape == (4, 300)
    assert jacobian.exponent < 0 and perturbation.exponent < 0
    assert abs(jacobian.exponent - perturbation.exponent) < 0.05


def test_alpha_3_with_small_input_is_chaotic():
    weight = reference_topology(200, spectral_radius=3.0)
    drive = iid_drive(weight, amplitude=0.01)
    assert lyapunov_perturbation(weight, drive, washout=50).exponent > 0.1
    assert lyapunov_jacobian(weight, drive, washout=50, samples=8).exponent > 0.1


def test_both_methods_give_ln_rho_of_the_leaky_linearisation_for_tiny_input():
    """Near h = 0, J_t = (1 − a)·I + a·Wᵀ, so λ = ln max_i |1 − a + a·μ_i| over the eigenvalues μ_i of W."""
    weight, leak_rate = reference_topology(100), 0.5
    drive = iid_drive(weight, amplitude=1e-4, sequences=2, steps=600)
    expected = math.log((1 - leak_rate + leak_rate * eigenvalue_spectrum(weight)).abs().max().item())
    jacobian = lyapunov_jacobian(weight, drive, leak_rate, washout=100, samples=4)
    perturbation = lyapunov_perturbation(weight, drive, leak_rate, washout=300)
    assert jacobian.exponent == pytest.approx(expected, abs=1e-4)
    assert perturbation.exponent == pytest.approx(expected, abs=5e-3)


def test_qr_spectrum_is_ordered_and_starts_at_the_largest_exponent():
    weight = reference_topology(100)
    drive = iid_drive(weight)
    exponents = lyapunov_spectrum(weight, drive, num_exponents=4, washout=50)
    assert exponents.shape == (4,)
    assert (exponents[:-1] >= exponents[1:] - 0.01).all()
    assert exponents[0].item() == pytest.approx(lyapunov_perturbation(weight, drive, washout=50).exponent, abs=0.02)


# --- spectrum, echo-state property, states ---------------------------------------------------------------------


def test_spectral_radius_matches_alpha():
    reservoir = Reservoir(8, num_nodes=60, jump_size=7, spectral_radius=0.7)
    eigenvalues = eigenvalue_spectrum(reservoir.weight[0])
    assert eigenvalues.shape == (60,) and eigenvalues.is_complex()
    assert spectral_radius(eigenvalues) == pytest.approx(0.7, abs=1e-5)


def test_echo_state_distance_vanishes_at_alpha_09_and_not_at_alpha_3():
    stable = reference_topology(100)
    distance = echo_state_distance(stable, iid_drive(stable))
    assert distance.shape == (4, 301)
    assert (distance[:, 0] > 1).all() and (distance[:, -1] < 1e-8).all()
    chaotic = reference_topology(100, spectral_radius=3.0)
    assert (echo_state_distance(chaotic, iid_drive(chaotic, amplitude=0.01))[:, -1] > 0.1).all()


def test_state_statistics_of_silent_and_saturated_reservoirs():
    weight = reference_topology(50)
    silent = state_statistics(run_reservoir(weight, torch.zeros(2, 10, 50, dtype=torch.float64)))
    assert (silent.mean_abs, silent.saturated_fraction, silent.mean_gain) == (0.0, 0.0, 1.0)
    saturated = state_statistics(run_reservoir(weight, torch.full((2, 10, 50), 20.0, dtype=torch.float64)))
    assert saturated.saturated_fraction == 1.0 and saturated.mean_gain < 1e-6


# --- small-world measures --------------------------------------------------------------------------------------


def test_clustering_and_path_length_match_networkx_on_weighted_and_binary_graphs():
    graph = nx.watts_strogatz_graph(60, 6, 0.2, seed=1)
    for u, v in graph.edges:
        graph[u][v]["weight"] = 0.1 + ((7 * u + 13 * v) % 10) / 10
        graph[u][v]["distance"] = 1 / graph[u][v]["weight"]
    weighted, binary, everyone = as_matrix(graph, "weight"), as_matrix(graph), torch.arange(60)
    assert clustering(weighted).mean().item() == pytest.approx(nx.average_clustering(graph, weight="weight"))
    assert clustering(binary).mean().item() == pytest.approx(nx.average_clustering(graph))
    assert characteristic_path_length(binary, everyone) == pytest.approx(nx.average_shortest_path_length(graph))
    expected = nx.average_shortest_path_length(graph, weight="distance")
    assert characteristic_path_length(weighted, everyone) == pytest.approx(expected)


def test_sigma_is_above_one_on_a_watts_strogatz_graph():
    measures = small_world(as_matrix(nx.watts_strogatz_graph(300, 10, 0.1, seed=0)), num_references=3)
    assert measures.sigma > 3
    assert abs(measures.omega) < 0.3


def test_sigma_is_about_one_on_an_erdos_renyi_graph():
    measures = small_world(as_matrix(nx.gnm_random_graph(300, 3000, seed=0)), num_references=4)
    assert measures.sigma == pytest.approx(1.0, abs=0.1)
    assert measures.omega > 0.7


def test_omega_is_near_minus_one_on_a_ring_lattice():
    assert small_world(as_matrix(nx.watts_strogatz_graph(300, 10, 0.0)), num_references=2).omega < -0.7


def test_strongest_edges_graph_breaks_ties_without_making_hubs():
    """The reference |W| takes three values, so choosing the k strongest is mostly tie-breaking."""
    adjacency = strongest_edges(edge_strength(reference_topology(200)), 10)
    degree = adjacency.sum(dim=1)
    assert torch.equal(adjacency, adjacency.T) and adjacency.diagonal().sum() == 0
    assert degree.min() >= 10 and degree.max() <= 30


def test_reservoir_small_world_reports_both_graphs():
    graphs = reservoir_small_world(reference_topology(100), strongest=6, path_sources=30)
    assert set(graphs) == {"weighted", "strongest"}
    assert graphs["weighted"].edges == 100 * 99 // 2  # one zeroed entry of W still leaves its mirror
    assert all(math.isfinite(measures.sigma) and math.isfinite(measures.omega) for measures in graphs.values())


# --- a ViR's reservoirs ----------------------------------------------------------------------------------------


def tiny_vir(**options) -> ViR:
    return ViR(10, 28, 1, num_nodes=30, jump_size=4, embed_dim=8, mlp_dim=16, patch_size=7, **options)


def test_parallel_cores_share_the_tokens_and_take_their_own_matrices():
    torch.manual_seed(0)
    model, images = tiny_vir(depth=3), torch.randn(2, 1, 28, 28)
    cores = reservoir_cores(model, images)
    assert [core.name for core in cores] == ["core0", "core1", "core2"]
    for index, core in enumerate(cores):
        assert torch.equal(core.tokens, model.embed(images).double())
        assert torch.equal(core.tensors.weight, reservoir_tensors(model.reservoirs[0], index).weight)


def test_serial_core_reads_the_previous_core_outputs():
    torch.manual_seed(0)
    model, images = tiny_vir(depth=2, mode="serial", dropout=0.5), torch.randn(2, 1, 28, 28)
    model.train()
    cores = reservoir_cores(model, images)
    assert model.training  # the mode is restored
    model.eval()
    with torch.no_grad():
        tokens = model.embed(images)
        first_outputs = model.blocks[0](model.readouts[0](tokens, model.reservoirs[0](tokens)[0]))  # (B, T, D)
    assert torch.allclose(cores[1].tokens, first_outputs.double())
    assert not torch.equal(cores[0].tensors.weight, cores[1].tensors.weight)


def test_cores_without_images_have_no_tokens():
    assert all(core.tokens is None for core in reservoir_cores(tiny_vir(depth=2)))


# --- the anchors of the spec at the reference settings (N 1000, α 0.9) ------------------------------------------


@pytest.fixture(scope="module")
def reference_reservoir() -> Reservoir:
    return Reservoir(128, num_nodes=1000)  # the reference's W and V (seed 42)


@pytest.mark.slow
def test_reference_memory_capacity_is_about_42(reference_reservoir):
    """Spec anchor MC ≈ 42 over k = 1..200. Tolerance 10%: the reference's input vector is not specified; ours
    is drawn like a row of V (5% non-zeros, U[0, 1))."""
    tensors = reservoir_tensors(reference_reservoir)
    capacity = memory_capacity(tensors.weight, tensors.input_vector(), max_delay=200)
    assert capacity.total == pytest.approx(42, rel=0.1)


@pytest.mark.slow
def test_reference_lyapunov_exponent_is_about_minus_012_by_both_methods(reference_reservoir):
    """Spec anchor λ ≈ −0.12 (tolerance 0.02 on each method), driven by the memory-capacity protocol."""
    tensors = reservoir_tensors(reference_reservoir)
    drive = scalar_drive(iid_scalar_input(4, 300, seed=1), tensors.input_vector())
    jacobian = lyapunov_jacobian(tensors.weight, drive, washout=50, samples=8)
    perturbation = lyapunov_perturbation(tensors.weight, drive, washout=50)
    assert jacobian.exponent == pytest.approx(-0.12, abs=0.02)
    assert perturbation.exponent == pytest.approx(-0.12, abs=0.02)
    assert abs(jacobian.exponent - perturbation.exponent) < 0.05
