"""The dynamics measures of `lit_vir.analysis` against what theory, networkx and the spec say they must give."""

from __future__ import annotations

import math
from dataclasses import asdict

import networkx as nx
import numpy as np
import pytest
import torch

from lit_vir.analysis import (
    MEASURES,
    AnalysisSettings,
    ReservoirCore,
    analyse_core,
    core_drive,
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
from lit_vir.analysis.drives import token_drive
from lit_vir.analysis.small_world import (
    SmallWorld,
    characteristic_path_length,
    clustering,
    edge_strength,
    lattice_reference,
    random_reference,
    reservoir_small_world,
    shortest_path_lengths,
    strongest_edges,
)
from lit_vir.models import Reservoir, ViR
from lit_vir.models.reservoir_options import ReservoirOptions
from lit_vir.models.topology import nearly_fully_connected
from tests.analysis_reference import (
    as_graph,
    assert_core_fields_match,
    reference_core_fields,
    reference_echo_state_distance,
    reference_edge_strength,
    reference_log_radii,
    reference_memory_capacity,
    reference_random_graph,
    reference_ring_lattice,
    reference_scalar_input_vector,
    reference_small_world,
    reference_spectrum,
    reference_state_statistics,
    reference_strongest_edges,
    reference_tangent_growth,
    reference_trajectory,
)


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


def saturating_drive(nodes: int = 12, sequences: int = 2, steps: int = 10, amplitude: float = 4.0) -> torch.Tensor:
    """An i.i.d. drive strong enough that tanh saturates part of the nodes: J_t then differs from step to step."""
    vector = scalar_input_vector(nodes, density=1.0, signed=True, seed=1)
    return scalar_drive(iid_scalar_input(sequences, steps, amplitude=amplitude, seed=4), vector)


# --- memory capacity -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("activation", "input_scale"), [("identity", 1.0), ("tanh", 0.01)])
def test_memory_capacity_of_a_near_linear_orthogonal_reservoir_approaches_n(activation, input_scale):
    nodes = 50
    vector = input_scale * scalar_input_vector(nodes, density=1.0, signed=True, seed=1)
    capacity = memory_capacity(0.95 * orthogonal(nodes), vector, activation=activation, max_delay=200)
    # the limit MC → N of a near-linear orthogonal W, a property; the value itself: test_..._equation_written_out
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
    assert 0.0 < capacity.total <= nodes, name  # the bound MC ≤ N is what is tested; values: ..._written_out


def test_memory_capacity_grows_when_the_input_is_near_linear():
    weight = reference_topology(100)
    vector = scalar_input_vector(100, density=0.05, seed=0)
    saturating = memory_capacity(weight, 10.0 * vector, max_delay=60).total
    near_linear = memory_capacity(weight, 0.1 * vector, max_delay=60).total
    assert near_linear > saturating + 5


MEMORY_DEFAULTS = dict(
    max_delay=200, washout=200, steps=1000, train_sequences=8, test_sequences=2, ridge=1e-6, amplitude=0.8, seed=0
)


def memory_case(name: str):
    """(W, v, options of memory_capacity) for a reference comparison; N 12 keeps the numpy loop fast."""
    weight = reference_topology(12)
    vector = scalar_input_vector(12, density=1.0, signed=True, seed=2)
    short = dict(max_delay=30, washout=40, steps=300)
    bias = 0.2 * torch.randn(12, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return {
        "the documented defaults": (weight, vector, {}),
        "leaky, with bias, seed 3, amplitude 0.5": (
            weight,
            vector,
            dict(short, leak_rate=0.5, bias=bias, seed=3, amplitude=0.5, train_sequences=3, test_sequences=1),
        ),
        "a larger ridge": (weight, vector, dict(short, ridge=1e-2)),
        "inputs of amplitude 1e-3 (tiny states)": (weight, vector, dict(short, amplitude=1e-3)),
        "float32 W, v and b, computed in float64": (weight.float(), vector.float(), dict(short, bias=bias.float())),
        "linear": (0.9 * orthogonal(12, seed=4), vector, dict(short, activation="identity")),
    }[name]


@pytest.mark.parametrize(
    "case",
    [
        "the documented defaults",
        "leaky, with bias, seed 3, amplitude 0.5",
        "a larger ridge",
        "inputs of amplitude 1e-3 (tiny states)",
        "float32 W, v and b, computed in float64",
        "linear",
    ],
)
def test_memory_capacity_equals_the_equation_written_out(case):
    weight, vector, options = memory_case(case)
    reference_options = MEMORY_DEFAULTS | {key: value for key, value in options.items() if key != "activation"}
    activation = {"identity": lambda x: x, "tanh": np.tanh}[options.get("activation", "tanh")]
    expected = reference_memory_capacity(weight, vector, activation=activation, **reference_options)
    capacity = memory_capacity(weight, vector, **options)
    assert capacity.per_delay.dtype == torch.float64
    np.testing.assert_allclose(capacity.per_delay.numpy(), expected, rtol=1e-7, atol=1e-10)
    assert capacity.total == pytest.approx(expected.sum(), rel=1e-9)


@pytest.mark.parametrize("silenced", ["input_vector", "amplitude"])
def test_a_reservoir_that_no_input_reaches_remembers_nothing(silenced):
    """Constant states leave no correlation to measure: MC = 0 (not a failed ridge solve, nor NaN)."""
    weight, vector = reference_topology(12), scalar_input_vector(12, density=1.0, signed=True, seed=2)
    options = dict(max_delay=5, washout=20, steps=100)
    if silenced == "amplitude":
        capacity = memory_capacity(weight, vector, amplitude=0.0, **options)
    else:
        capacity = memory_capacity(weight, torch.zeros(12, dtype=torch.float64), **options)
    assert torch.equal(capacity.per_delay, torch.zeros(5, dtype=torch.float64)) and capacity.total == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_memory_capacity_runs_where_w_is_with_a_bias_given_anywhere():
    """The protocol's inputs (drawn on the CPU) and a CPU bias follow a GPU W."""
    weight, vector, options = memory_case("leaky, with bias, seed 3, amplitude 0.5")
    on_cpu = memory_capacity(weight, vector, **options).per_delay
    on_gpu = memory_capacity(weight.cuda(), vector.cuda(), **options).per_delay  # options["bias"] on the CPU
    assert on_gpu.is_cuda
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=0, atol=1e-9)


def test_memory_capacity_of_a_delay_line_is_one_per_node_it_can_hold():
    """W shifts node i to node i + 1 and v feeds node 0, so h_t = (u(t), u(t − 1), …, u(t − N + 1)): a linear
    readout recalls u(t − k) exactly for k < N (MC_k = 1) and not at all beyond (MC_k ≈ 0): MC = N − 1."""
    nodes = 8
    shift = torch.diag(torch.ones(nodes - 1, dtype=torch.float64), diagonal=1)  # W[i, i + 1] = 1
    first = torch.zeros(nodes, dtype=torch.float64)
    first[0] = 1.0
    for amplitude in (0.8, 1e-3):  # a relative ridge: the same memory at any input scale
        capacity = memory_capacity(shift, first, activation="identity", max_delay=20, amplitude=amplitude)
        assert capacity.per_delay[: nodes - 1].numpy() == pytest.approx(np.ones(nodes - 1), abs=1e-9)
        assert capacity.per_delay[nodes - 1 :].max() < 0.01  # sample correlations of independent inputs
        assert capacity.total == pytest.approx(nodes - 1, abs=0.05)


@pytest.mark.parametrize("field", ["steps", "max_delay", "train_sequences", "test_sequences"])
def test_memory_capacity_refuses_a_non_positive_count_and_accepts_one(field):
    weight, vector = reference_topology(12), scalar_input_vector(12, density=1.0, signed=True, seed=2)
    options = dict(max_delay=5, washout=20, steps=100)
    with pytest.raises(
        ValueError, match=r"^steps, max_delay, train_sequences and test_sequences must all be positive$"
    ):
        memory_capacity(weight, vector, **(options | {field: 0}))
    smallest = options | {field: 1}
    expected = reference_memory_capacity(weight, vector, **(MEMORY_DEFAULTS | smallest))
    assert memory_capacity(weight, vector, **smallest).per_delay.numpy() == pytest.approx(expected, abs=1e-9)


def test_memory_capacity_needs_sequences_longer_than_the_largest_delay():
    weight, vector = reference_topology(12), scalar_input_vector(12, density=1.0, signed=True, seed=2)
    with pytest.raises(ValueError, match=r"^max_delay = 30 needs sequences longer than washout \+ steps = 30$"):
        memory_capacity(weight, vector, max_delay=30, washout=10, steps=20)
    assert memory_capacity(weight, vector, max_delay=29, washout=10, steps=20).per_delay.shape == (29,)


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


def chaotic_reservoir() -> torch.Tensor:
    return reference_topology(12, spectral_radius=1.2)


def test_jacobian_method_averages_ln_rho_of_every_steps_jacobian():
    """Leak 0.3 (1 − a is no binary fraction) and saturated nodes, so every term of equation (1) counts."""
    weight, drive = chaotic_reservoir(), saturating_drive()
    gains = 1 - reference_trajectory(weight, drive, 0.3)[1] ** 2  # (B, T, N): the diagonal of diag(1 − s_t²)
    assert (gains < 0.5).mean() > 0.3  # a third of the nodes saturated: J_t is far from (1 − a)·I + a·Wᵀ
    estimate = lyapunov_jacobian(weight, drive, 0.3, washout=3, samples=None, eig_dtype=torch.float64)
    after_washout = reference_log_radii(weight, drive, 0.3).reshape(2, 10)[:, 3:].reshape(-1)  # (B·T',)
    assert estimate.local.dtype == torch.float64
    np.testing.assert_allclose(estimate.local.numpy(), after_washout, rtol=0, atol=1e-10)
    assert estimate.exponent == pytest.approx(after_washout.mean(), abs=1e-10)


def test_jacobian_method_samples_evenly_spaced_steps_across_the_sequences(monkeypatch):
    """16 (sequence, step) pairs after the washout and 6 samples: pairs 0, 3, 6 of the first sequence and
    9, 12, 15 (its steps 1, 4, 7) of the second; the eigenvalues are solved in float32 by default."""
    weight, drive = chaotic_reservoir(), saturating_drive()
    solved, eigvals = [], torch.linalg.eigvals
    monkeypatch.setattr(torch.linalg, "eigvals", lambda matrices: solved.append(matrices.dtype) or eigvals(matrices))
    estimate = lyapunov_jacobian(weight, drive, 0.3, washout=2, samples=6)
    after_washout = reference_log_radii(weight, drive, 0.3).reshape(2, 10)[:, 2:].reshape(-1)
    assert set(solved) == {torch.float32}  # the cost trade-off of the module docstring
    assert estimate.local.dtype == torch.float64  # the logs are taken in the drive's dtype
    np.testing.assert_allclose(estimate.local.numpy(), after_washout[[0, 3, 6, 9, 12, 15]], rtol=0, atol=1e-5)


def test_jacobian_method_uses_each_step_once_when_samples_exceed_the_steps():
    weight, drive = chaotic_reservoir(), saturating_drive()
    every_step = reference_log_radii(weight, drive, 0.3)  # 20 pairs, more than N = 12
    for samples in (None, 50):
        estimate = lyapunov_jacobian(weight, drive, 0.3, samples=samples, eig_dtype=torch.float64)
        np.testing.assert_allclose(estimate.local.numpy(), every_step, rtol=0, atol=1e-10)


def test_jacobian_method_defaults_are_no_washout_and_8_samples():
    weight, drive = chaotic_reservoir(), saturating_drive()
    default = lyapunov_jacobian(weight, drive)
    explicit = lyapunov_jacobian(weight, drive, 1.0, washout=0, samples=8, eig_dtype=torch.float32)
    assert default.local.shape == (8,) and torch.equal(default.local, explicit.local)


def test_jacobian_method_with_one_step_left_and_with_none():
    weight, drive = chaotic_reservoir(), saturating_drive(sequences=1)
    estimate = lyapunov_jacobian(weight, drive, 0.3, washout=9, eig_dtype=torch.float64)
    assert estimate.local.numpy() == pytest.approx(reference_log_radii(weight, drive, 0.3)[-1:], abs=1e-10)
    with pytest.raises(ValueError, match=r"^no steps left after washout = 10 of 10; lower the washout$"):
        lyapunov_jacobian(weight, drive, washout=10)


def test_jacobian_method_makes_its_tensors_where_the_drive_is():
    """Not on torch's default device, which a user may have set to a GPU (here: to the meta device)."""
    weight, drive = chaotic_reservoir(), saturating_drive()
    expected = lyapunov_jacobian(weight, drive, 0.3, samples=4)
    with torch.device("meta"):
        placed = lyapunov_jacobian(weight, drive, 0.3, samples=4)
    assert torch.equal(placed.local, expected.local)


def test_perturbation_method_follows_the_tangent_map_from_its_seeded_direction():
    """A twin at distance ε = 1e-8 separates like J_t·δ up to O(ε), so every local value matches the tangent
    map's, the first steps (where the seeded initial direction shows) included."""
    weight, drive = chaotic_reservoir(), saturating_drive()
    estimate = lyapunov_perturbation(weight, drive, 0.3)  # the defaults: ε 1e-8, seed 0, no washout
    expected = reference_tangent_growth(weight, drive, 0.3, seed=0)
    np.testing.assert_allclose(estimate.local.numpy(), expected, rtol=0, atol=1e-6)
    assert estimate.exponent == pytest.approx(expected.mean(), abs=1e-6)
    washed = lyapunov_perturbation(weight, drive, 0.3, washout=4, seed=7)
    expected = reference_tangent_growth(weight, drive, 0.3, seed=7)
    np.testing.assert_allclose(washed.local.numpy(), expected, rtol=0, atol=1e-6)
    assert washed.exponent == pytest.approx(expected[:, 4:].mean(), abs=1e-6)


def test_qr_spectrum_equals_benettins_algorithm_with_gram_schmidt():
    """Ten steps only, so the seeded initial tangents still show in the averages."""
    weight, drive = chaotic_reservoir(), saturating_drive()
    default = lyapunov_spectrum(weight, drive)  # 5 exponents, no leak, no washout, seed 0
    np.testing.assert_allclose(default.numpy(), reference_spectrum(weight, drive, 1.0, 5, 0, seed=0), atol=1e-10)
    leaky = lyapunov_spectrum(weight, drive, 0.3, num_exponents=3, washout=4, seed=7)
    np.testing.assert_allclose(leaky.numpy(), reference_spectrum(weight, drive, 0.3, 3, 4, seed=7), atol=1e-10)


ESTIMATORS = {
    "jacobian": lambda weight, drive: lyapunov_jacobian(weight, drive, 0.3).local,
    "perturbation": lambda weight, drive: lyapunov_perturbation(weight, drive, 0.3, epsilon=1e-3).local,
    "spectrum": lambda weight, drive: lyapunov_spectrum(weight, drive, 0.3, num_exponents=3),
}


@pytest.mark.parametrize("estimator", ["perturbation", "spectrum"])
def test_the_seeded_draws_are_made_on_the_generators_device(estimator):
    """The random starts are drawn by a CPU generator whatever torch's default device (which a user may have set
    to a GPU; here the meta device) and follow the drive."""
    run, weight, drive = ESTIMATORS[estimator], chaotic_reservoir(), saturating_drive()
    expected = run(weight, drive)
    with torch.device("meta"):
        placed = run(weight, drive)
    assert torch.equal(placed, expected)


def test_echo_state_and_iid_draws_are_made_on_the_generators_device():
    weight, drive = chaotic_reservoir(), saturating_drive()
    expected = echo_state_distance(weight, drive), iid_scalar_input(2, 5)
    with torch.device("meta"):
        placed = echo_state_distance(weight, drive), iid_scalar_input(2, 5)
    assert all(torch.equal(a, b) for a, b in zip(placed, expected, strict=True))


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_estimators_run_in_the_drives_dtype(estimator):
    """A float32 W is cast to a float64 drive; a float32 drive gives float32 values, close to float64's."""
    run, weight, drive = ESTIMATORS[estimator], chaotic_reservoir().float(), saturating_drive()
    in_float64 = run(weight.double(), drive)
    assert torch.equal(run(weight, drive), in_float64)
    in_float32 = run(weight, drive.float())
    assert in_float32.dtype == torch.float32
    torch.testing.assert_close(in_float32.double(), in_float64, rtol=0, atol=1e-3)


def test_jacobian_method_casts_a_float64_w_to_a_float32_drive():
    """J_t is formed in the drive's dtype: a float64 W with a float32 drive gives exactly what the float32 W
    gives (formed in float64, the Jacobians would differ in their last float32 digits, which a float64
    eigensolve shows)."""
    weight, drive = chaotic_reservoir(), saturating_drive().float()
    in_float32 = lyapunov_jacobian(weight.float(), drive, 0.3, eig_dtype=torch.float64).local
    assert torch.equal(lyapunov_jacobian(weight, drive, 0.3, eig_dtype=torch.float64).local, in_float32)


def test_qr_spectrum_is_ordered_and_starts_at_the_largest_exponent():
    weight = reference_topology(100)
    drive = iid_drive(weight)
    exponents = lyapunov_spectrum(weight, drive, num_exponents=4, washout=50)
    assert exponents.shape == (4,)
    assert (exponents[:-1] >= exponents[1:] - 0.01).all()
    assert exponents[0].item() == pytest.approx(lyapunov_perturbation(weight, drive, washout=50).exponent, abs=0.02)


# --- spectrum, echo-state property, states ---------------------------------------------------------------------


def test_spectrum_is_numpys_in_complex128_by_decreasing_modulus():
    weight = reference_topology(30).float()  # computed in float64 all the same
    eigenvalues = eigenvalue_spectrum(weight)
    expected = np.linalg.eigvals(weight.double().numpy())
    assert eigenvalues.dtype == torch.complex128
    np.testing.assert_allclose(eigenvalues.abs().numpy(), np.sort(np.abs(expected))[::-1], rtol=0, atol=1e-12)
    assert spectral_radius(eigenvalues) == pytest.approx(np.abs(expected).max(), rel=1e-12)


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


@pytest.mark.parametrize(("leak_rate", "seed"), [(1.0, 0), (0.3, 5)])
def test_echo_state_distance_follows_both_trajectories_from_the_seeded_start(leak_rate, seed):
    weight, drive = chaotic_reservoir(), saturating_drive()
    run = (
        (lambda: echo_state_distance(weight, drive))
        if seed == 0
        else (lambda: echo_state_distance(weight, drive, leak_rate, seed=seed))
    )
    distance, expected = run(), reference_echo_state_distance(weight, drive, leak_rate, seed=seed)
    assert distance.shape == (2, 11) and distance.dtype == torch.float64
    np.testing.assert_allclose(distance.numpy(), expected, rtol=1e-10, atol=1e-12)
    in_float32 = echo_state_distance(weight.float(), drive.float(), leak_rate, seed=seed)
    assert in_float32.dtype == torch.float32  # the drive's dtype, the start's norm included
    np.testing.assert_allclose(in_float32.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_a_start_state_is_run_in_the_drives_dtype():
    weight, drive = chaotic_reservoir(), saturating_drive().float()
    start = torch.linspace(-1, 1, 12, dtype=torch.float64).expand(2, 12)
    trajectory = run_reservoir(weight, drive, 0.3, initial_state=start)
    assert trajectory.states.dtype == trajectory.activations.dtype == torch.float32
    states, outputs = reference_trajectory(weight, drive, 0.3, initial=start.numpy())
    np.testing.assert_allclose(trajectory.states.numpy(), states, rtol=0, atol=1e-5)
    np.testing.assert_allclose(trajectory.activations.numpy(), outputs, rtol=0, atol=1e-5)


def test_state_statistics_equal_numpys_over_every_state():
    weight, drive = chaotic_reservoir(), saturating_drive()
    trajectory = run_reservoir(weight, drive)
    states, outputs = reference_trajectory(weight, drive)
    expected = reference_state_statistics(states, outputs)
    assert 0 < expected["saturated_fraction"] < 1  # the threshold is crossed by some states, not all
    assert asdict(state_statistics(trajectory)) == pytest.approx(expected, rel=1e-12)


def test_a_state_at_exactly_099_is_not_saturated():
    """The saturated fraction counts |h| > 0.99: linear nodes driven to exactly ±0.99 and to 0.995."""
    drive = torch.tensor([0.99, -0.99, 0.995, 0.5], dtype=torch.float64).expand(1, 3, 4)
    statistics = state_statistics(run_reservoir(torch.zeros(4, 4), drive, activation="identity"))
    assert statistics.saturated_fraction == 0.25


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
    # float32 weights, normalised by the largest (here 3) and computed in float64: networkx on the same float32 values
    single = 3 * weighted.float()
    scaled, rounded = clustering(single), as_graph(single.double().numpy())
    assert scaled.dtype == torch.float64
    assert scaled.mean().item() == pytest.approx(nx.average_clustering(rounded, weight="weight"), rel=1e-13)
    expected = nx.average_shortest_path_length(rounded, weight="distance")
    assert characteristic_path_length(single, everyone) == pytest.approx(expected, rel=1e-13)
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
    # σ = 1 only in expectation over random graphs (the graph is one, its references four others); the fields
    # themselves are checked exactly against networkx in test_reservoir_small_world_equals_networkx_...
    assert measures.sigma == pytest.approx(1.0, abs=0.1)
    assert measures.omega > 0.7


def test_omega_is_near_minus_one_on_a_ring_lattice():
    assert small_world(as_matrix(nx.watts_strogatz_graph(300, 10, 0.0)), num_references=2).omega < -0.7


def test_strongest_edges_graph_breaks_ties_without_making_hubs():
    """The reference |W| takes three values, so choosing the k strongest is mostly tie-breaking."""
    adjacency = strongest_edges(edge_strength(reference_topology(200)), 10)
    degree = adjacency.sum(dim=1)
    assert torch.equal(adjacency, adjacency.T) and adjacency.diagonal().sum() == 0
    assert degree.min() >= 10 and degree.max() <= 30  # no hubs, a property; the choice itself: ..._hand_made_ones


def test_reservoir_small_world_equals_networkx_on_both_graphs_built_by_hand():
    """Every field of both graphs — C, L, their random and lattice references, σ, ω and the edge count —
    against networkx on graphs built here (numpy strengths, a hand-written tie-break, hand-placed references)."""
    weight = reference_topology(40)
    graphs = reservoir_small_world(weight, strongest=6, num_references=3, path_sources=15, seed=4)
    strength = reference_edge_strength(weight)
    expected = {
        "weighted": reference_small_world(strength, num_references=3, path_sources=15, seed=4),
        "strongest": reference_small_world(reference_strongest_edges(strength, 6, seed=4), 3, 15, seed=4),
    }
    assert set(graphs) == set(expected)
    for name, measures in graphs.items():
        assert asdict(measures) == pytest.approx(asdict(expected[name]), rel=1e-9), name
    assert graphs["weighted"].edges == 40 * 39 // 2  # one zeroed entry of W still leaves its mirror


def test_small_world_defaults_are_two_references_100_sources_and_seed_0():
    """At N = 120 > 100 the default number of path sources shows (all nodes would be another L)."""
    weights = as_matrix(nx.watts_strogatz_graph(120, 6, 0.1, seed=3))
    expected = reference_small_world(weights.numpy(), num_references=2, path_sources=100, seed=0)
    assert asdict(small_world(weights)) == pytest.approx(asdict(expected), rel=1e-9)
    strength = reference_edge_strength(reference_topology(120))
    strongest = reference_small_world(reference_strongest_edges(strength, 10, seed=0), 2, 100, seed=0)
    assert asdict(reservoir_small_world(reference_topology(120))["strongest"]) == pytest.approx(asdict(strongest))


def test_edge_strength_and_strongest_edges_equal_the_hand_made_ones():
    weight = reference_topology(30, seed=1)
    strength = edge_strength(weight.float())  # in float64 whatever W's dtype
    assert strength.dtype == torch.float64
    np.testing.assert_allclose(strength.numpy(), reference_edge_strength(weight), rtol=1e-7, atol=0)
    for k, seed in ((3, 0), (7, 2)):
        chosen = strongest_edges(edge_strength(weight), k, seed=seed)
        assert np.array_equal(chosen.numpy(), reference_strongest_edges(reference_edge_strength(weight), k, seed))
    assert torch.equal(strongest_edges(edge_strength(weight), 3), strongest_edges(edge_strength(weight), 3, seed=0))


def test_strongest_edges_never_link_what_has_no_strength():
    """A node with fewer than k partners of non-zero strength keeps only those."""
    strength = torch.zeros(5, 5, dtype=torch.float64)
    strength[0, 1] = strength[1, 0] = 2.0
    strength[2, 3] = strength[3, 2] = 1.0
    assert torch.equal(strongest_edges(strength, 3), torch.tensor(reference_strongest_edges(strength.numpy(), 3)))
    assert strongest_edges(strength, 3).sum() == 4  # two edges, both ends


@pytest.mark.parametrize("nodes", [6, 7, 8])
def test_the_references_place_the_weights_as_documented(nodes):
    """Every pair weighted distinctly, so the lattice reaches the diameter of an even ring."""
    rows, columns = np.triu_indices(nodes, k=1)
    weights = np.zeros((nodes, nodes))
    weights[rows, columns] = weights[columns, rows] = 1 + np.arange(len(rows))
    lattice = lattice_reference(torch.tensor(weights))
    assert np.array_equal(lattice.numpy(), reference_ring_lattice(weights))
    assert lattice[0, 1] == len(rows) and lattice[0, nodes // 2] > 0  # the strongest on the nearest pair
    sparse = weights * (weights > len(rows) - 5)  # 5 edges: a lattice of nearest neighbours only
    assert np.array_equal(lattice_reference(torch.tensor(sparse)).numpy(), reference_ring_lattice(sparse))
    for seed in (0, 1):
        placed = random_reference(torch.tensor(sparse), torch.Generator().manual_seed(seed))
        expected = reference_random_graph(sparse, torch.Generator().manual_seed(seed))
        assert np.array_equal(placed.numpy(), expected)


def test_sigma_and_omega_of_measured_values_by_hand():
    measures = SmallWorld.of((0.5, 2.0), (0.25, 1.6), (0.6, 3.0), edges=7)
    assert asdict(measures) == pytest.approx(
        dict(
            clustering=0.5,
            path_length=2.0,
            random_clustering=0.25,
            random_path_length=1.6,
            lattice_clustering=0.6,
            lattice_path_length=3.0,
            sigma=(0.5 / 0.25) / (2.0 / 1.6),
            omega=1.6 / 2.0 - 0.5 / 0.6,
            edges=7,
        )
    )


def test_sigma_and_omega_are_nan_where_a_reference_has_no_triangles():
    """A ring (C = 0) against references without triangles: each ratio to a zero is NaN, not an error or ±inf;
    σ stays a number (0) where only the lattice lacks triangles, ω where only the random graph does."""
    none = SmallWorld.of((0.0, 2.0), (0.0, 1.5), (0.0, 3.0), edges=4)
    assert math.isnan(none.sigma) and math.isnan(none.omega)
    lattice_empty = SmallWorld.of((0.0, 2.0), (0.2, 1.5), (0.0, 3.0), edges=4)
    assert lattice_empty.sigma == 0.0 and math.isnan(lattice_empty.omega)
    random_empty = SmallWorld.of((0.3, 2.0), (0.0, 1.5), (0.6, 3.0), edges=4)
    assert math.isnan(random_empty.sigma) and random_empty.omega == pytest.approx(1.5 / 2.0 - 0.3 / 0.6)


def test_a_graph_without_edges_has_an_infinite_path_length():
    empty = torch.zeros(4, 4, dtype=torch.float64)
    assert characteristic_path_length(empty, torch.arange(4)) == float("inf")
    lengths = shortest_path_lengths(empty, torch.tensor([1]))
    assert lengths[0, 1] == 0 and torch.isinf(lengths[0, [0, 2, 3]]).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_small_world_of_a_gpu_matrix_equals_the_cpus():
    weight = reference_topology(30)
    expected = reservoir_small_world(weight, strongest=4, path_sources=10)
    assert reservoir_small_world(weight.cuda(), strongest=4, path_sources=10) == pytest.approx(expected)


def test_small_world_makes_its_tensors_where_the_weights_are():
    """Not on torch's default device, which a user may have set to a GPU (here: to the meta device)."""
    weight = reference_topology(30)
    expected = reservoir_small_world(weight, strongest=4, path_sources=10)
    with torch.device("meta"):
        placed = reservoir_small_world(weight, strongest=4, path_sources=10)
    assert placed == expected


# --- drives ---------------------------------------------------------------------------------------------------


def test_iid_input_is_uniform_on_plus_minus_the_amplitude_from_its_seed():
    draws = torch.rand(3, 50, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    assert torch.equal(iid_scalar_input(3, 50, amplitude=0.5, seed=9), 0.5 * (2 * draws - 1))
    default = iid_scalar_input(3, 50)  # amplitude 0.8, seed 0
    draws = torch.rand(3, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(default, 0.8 * (2 * draws - 1)) and default.min() < -0.7 and default.max() > 0.7


@pytest.mark.parametrize(("density", "signed", "seed"), [(0.05, False, 0), (0.3, True, 4)])
def test_scalar_input_vector_is_drawn_as_documented(density, signed, seed):
    vector = scalar_input_vector(60, density=density, signed=signed, seed=seed)
    assert vector.dtype == torch.float64
    np.testing.assert_array_equal(vector.numpy(), reference_scalar_input_vector(60, density, signed, seed))
    np.testing.assert_array_equal(scalar_input_vector(60).numpy(), reference_scalar_input_vector(60, 0.05, False, 0))


@pytest.mark.parametrize("signed", [False, True])
def test_the_iid_input_vector_of_a_reservoir_is_drawn_like_a_row_of_its_v(signed):
    bank = Reservoir(5, num_nodes=40, jump_size=6, input_sparsity=0.2, signed_input=signed, num_reservoirs=2)
    tensors = reservoir_tensors(bank, 1)
    assert int((tensors.input_weight != 0).sum()) == 40  # round(0.2 · 5 · 40)
    for seed in (0, 3):  # V's density 0.2 → round(0.2 · 40) = 8 non-zeros
        expected = reference_scalar_input_vector(40, 0.2, signed, seed)
        np.testing.assert_array_equal(tensors.input_vector(seed).numpy(), expected)
    np.testing.assert_array_equal(tensors.input_vector().numpy(), reference_scalar_input_vector(40, 0.2, signed, 0))


def test_reservoir_tensors_are_the_banks_buffers_in_float64():
    bank = Reservoir(5, num_nodes=20, jump_size=4, bias_scaling=0.5, leak_rate=0.3, num_reservoirs=2)
    for index in (0, 1):
        tensors = reservoir_tensors(bank, index)
        for name in ("weight", "input_weight", "bias"):
            field = getattr(tensors, name)
            assert field.dtype == torch.float64 and torch.equal(field, getattr(bank, name)[index].double())
        assert tensors.leak_rate == 0.3 and tensors.num_nodes == 20
    assert reservoir_tensors(Reservoir(5, num_nodes=20, jump_size=4)).bias is None
    with pytest.raises(IndexError, match=r"^reservoir index 2 is outside the bank of 2 reservoirs$"):
        reservoir_tensors(bank, 2)
    with pytest.raises(IndexError, match=r"^reservoir index -1 is outside the bank of 2 reservoirs$"):
        reservoir_tensors(bank, -1)


def test_scalar_drive_is_in_the_input_vectors_dtype():
    inputs = iid_scalar_input(2, 4)  # float64
    vector = torch.tensor([0.0, 0.5, -1.0], dtype=torch.float32)
    drive = scalar_drive(inputs, vector, torch.tensor([0.1, 0.2, 0.3]))
    assert drive.dtype == torch.float32
    expected = inputs.float().numpy()[..., None] * vector.numpy() + np.array([0.1, 0.2, 0.3], dtype=np.float32)
    np.testing.assert_array_equal(drive.numpy(), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_iid_input_vector_follows_a_gpu_reservoir():
    tensors = reservoir_tensors(Reservoir(5, num_nodes=20, jump_size=4).cuda())
    assert tensors.input_vector().is_cuda


def test_token_drive_casts_the_tokens_to_vs_dtype():
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, 3, 5, generator=generator)  # float32
    weight, bias = torch.randn(5, 7, generator=generator, dtype=torch.float64), torch.linspace(-1, 1, 7)
    drive = token_drive(tokens, weight, bias.double())
    assert drive.dtype == torch.float64
    np.testing.assert_allclose(drive.numpy(), tokens.double().numpy() @ weight.numpy() + bias.double().numpy())
    np.testing.assert_allclose(token_drive(tokens, weight).numpy(), tokens.double().numpy() @ weight.numpy())


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


# --- one core's report, every budget and the seed away from its default ---------------------------------------

STATE_FIELDS = ("mean_abs", "std", "saturated_fraction", "mean_gain")
BUDGETS = dict(
    jacobian_samples=5, iid_sequences=2, iid_steps=40, iid_washout=7, max_delay=10, strongest_edges=4,
    num_references=3, path_sources=8, seed=3,
)  # fmt: skip


@pytest.mark.parametrize("driven_by", ["tokens", "iid"])
def test_analyse_core_gives_every_field_computed_here(driven_by):
    """A leaky reservoir with a bias, its i.i.d. input vector signed like its V, and a seed of 3, so that leaving
    out any of them (or any budget) changes a field."""
    bank = Reservoir(6, num_nodes=20, jump_size=4, leak_rate=0.5, bias_scaling=0.3, signed_input=True)
    tensors = reservoir_tensors(bank)
    tokens = torch.randn(2, 9, 6, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    core = ReservoirCore("core0", tensors, tokens if driven_by == "tokens" else None)
    fields = analyse_core(core, AnalysisSettings(**BUDGETS))
    expected = reference_core_fields(tensors.weight, tensors.input_weight, tensors.bias, 0.5, core.tokens, **BUDGETS)
    assert fields["name"] == "core0" and fields["drive"] == driven_by
    assert_core_fields_match(fields, expected)
    assert set(fields) == set(expected) | {"name", "drive"}
    drive = core_drive(core, AnalysisSettings(**BUDGETS))  # what the measures above were driven with
    assert (drive.kind, drive.washout) == ((driven_by, 0) if driven_by == "tokens" else (driven_by, 7))
    if driven_by == "tokens":
        np.testing.assert_allclose(
            drive.values.numpy(), tokens.numpy() @ tensors.input_weight.numpy() + tensors.bias.numpy()
        )


def test_analyse_core_gives_the_chosen_measures_and_refuses_unknown_ones():
    core = ReservoirCore("core2", reservoir_tensors(Reservoir(6, num_nodes=20, jump_size=4)), None)
    settings = AnalysisSettings(**BUDGETS)
    fields = analyse_core(core, settings, ("spectrum", "states"))
    assert set(fields) == {"name", "num_nodes", "drive", "spectral_radius", *(f"state_{name}" for name in STATE_FIELDS)}
    with pytest.raises(ValueError) as error:
        analyse_core(core, settings, ("spectrum", "lyapunovs", "memry"))
    assert str(error.value) == f"unknown measures ['lyapunovs', 'memry']; choose from {list(MEASURES)}"


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
