"""The reservoir's fixed matrices are built exactly as the spec's six steps say, and every other topology of
`ReservoirOptions.topology` has its defining property, each checked by an independent computation (numpy in
float64, networkx, scipy's distribution tests), never by the builders' own helpers."""

import networkx
import numpy as np
import pytest
import scipy.stats
import torch

from lit_vir.checks import ConfigError
from lit_vir.models.reservoir import Reservoir, draw_matrices
from lit_vir.models.reservoir_options import TOPOLOGIES, TOPOLOGY_OPTIONS, ReservoirOptions
from lit_vir.models.topology import (
    BUILDERS,
    cycle_with_jumps,
    has_cycle,
    input_matrix,
    link_weights,
    nearly_fully_connected,
    random_sparse,
    recurrent_matrix,
    scale_to_spectral_radius,
    signs_and_hole,
    spectral_radius,
    watts_strogatz,
)

REFERENCE = ReservoirOptions()


def build(seed: int = 0, nodes: int = 300, **options) -> torch.Tensor:
    options = ReservoirOptions(num_nodes=nodes, jump_size=37, **options)
    return nearly_fully_connected(options, torch.Generator().manual_seed(seed))


def inputs(in_features: int, nodes: int, seed: int, **options) -> torch.Tensor:
    """V drawn as `Reservoir` draws it from these options."""
    options = ReservoirOptions(num_nodes=nodes, jump_size=1, **options)
    generator = torch.Generator().manual_seed(seed)
    return input_matrix(in_features, nodes, generator, density=options.input_density, signed=options.signed_input)


def numpy_radius(weights: torch.Tensor) -> float:
    """ρ(W) by numpy's eigensolver in float64: independent of the `spectral_radius` helper that scaled W."""
    return float(np.abs(np.linalg.eigvals(weights.numpy().astype(np.float64))).max())


def test_spectral_radius_matches_alpha():
    for alpha in (0.5, 0.9, 1.3):
        assert numpy_radius(build(spectral_radius=alpha)) == pytest.approx(alpha, abs=1e-10)


def test_reference_size_spectral_radius_matches_alpha():
    weights = nearly_fully_connected(REFERENCE, torch.Generator().manual_seed(42))
    assert numpy_radius(weights) == pytest.approx(0.9, abs=1e-10)


def test_cycle_entries_where_the_spec_puts_them():
    pattern = cycle_with_jumps(10, cycle_weight=0.05, jump_weight=0.5, background_weight=0.08, jump_size=4)
    for node in range(9):
        assert pattern[node + 1, node] == 0.05
    assert pattern[0, 9] == 0.05


@pytest.mark.parametrize(
    ("nodes", "jumps"),
    [
        (12, {(0, 4), (4, 8), (8, 0)}),  # u = 0, 4, 8 while u + ℓ ≤ 12; 8 + 4 = 12 wraps to 0
        (7, {(0, 4)}),  # u = 4 would need 4 + 4 ≤ 7: one jump, and no wrap
        (9, {(0, 4), (4, 8)}),  # u = 8 would need 12 ≤ 9
    ],
)
def test_jump_entries_are_two_way_every_jump_size_and_wrap_to_node_zero(nodes, jumps):
    pattern = cycle_with_jumps(nodes, cycle_weight=0.05, jump_weight=0.5, background_weight=0.08, jump_size=4)
    expected = torch.full((nodes, nodes), 0.08, dtype=torch.float64)
    for node in range(nodes):
        expected[(node + 1) % nodes, node] = 0.05
    for u, v in jumps:
        expected[u, v] = expected[v, u] = 0.5
    assert torch.equal(pattern, expected)


def test_magnitudes_follow_the_pattern_after_signs_and_scaling():
    generator = torch.Generator().manual_seed(3)
    weights = nearly_fully_connected(ReservoirOptions(num_nodes=50, jump_size=7, spectral_radius=0.9), generator)
    pattern = cycle_with_jumps(50, cycle_weight=0.05, jump_weight=0.5, background_weight=0.08, jump_size=7)
    ratio = weights.abs() / pattern
    nonzero = ratio[weights != 0]
    assert torch.allclose(nonzero, nonzero[0].expand_as(nonzero))  # one common scale factor
    positive = int((weights > 0).sum())
    # independent ±1 with p = ½ (the draws themselves are checked bit for bit against the first implementation below):
    # a fair-coin binomial test, which a one-sided or biased sign draw (p ≤ 0.45 of 2,499 signs) fails
    assert scipy.stats.binomtest(positive, int((weights != 0).sum()), 0.5).pvalue > 1e-3
    assert scipy.stats.binomtest(positive, int((weights != 0).sum()), 0.45).pvalue < 1e-3  # the test can tell


def test_exactly_one_entry_is_zero():
    weights = build()
    assert int((weights == 0).sum()) == 1
    assert weights.numel() - int(torch.count_nonzero(weights)) == 1


def test_every_entry_can_be_the_hole():
    """The zeroed entry is uniform over all N² entries, the first one included."""
    holes = {signs_and_hole(2, torch.Generator().manual_seed(seed))[1] for seed in range(200)}
    assert holes == {0, 1, 2, 3}


def test_scaling_refuses_a_matrix_without_a_spectral_radius():
    with pytest.raises(
        ValueError, match=r"^cannot scale a matrix whose spectral radius is 0 \(all eigenvalues vanish\)$"
    ):
        scale_to_spectral_radius(torch.zeros(3, 3, dtype=torch.float64), 0.9)
    identity = torch.eye(3, dtype=torch.float64)  # ρ = 1 exactly: scaled, not refused
    assert torch.equal(scale_to_spectral_radius(identity, 0.9), 0.9 * identity)


def test_spectral_radius_is_computed_in_float64():
    matrix = torch.randn(60, 60, generator=torch.Generator().manual_seed(0))  # float32
    assert spectral_radius(matrix) == spectral_radius(matrix.double())


def test_input_matrix_density_is_input_sparsity():
    matrix = inputs(128, 1000, 0, input_sparsity=0.05)
    assert int(torch.count_nonzero(matrix)) == round(0.05 * 128 * 1000)
    values = matrix[matrix != 0].numpy()
    assert scipy.stats.kstest(values, scipy.stats.uniform(0, 1).cdf).pvalue > 1e-3  # U[0, 1) as in the reference
    assert scipy.stats.kstest(values, scipy.stats.uniform(0, 0.9).cdf).pvalue < 1e-6  # the test can tell


def test_signed_input_matrix_is_uniform_from_minus_one_to_one():
    matrix = inputs(64, 200, 0, input_sparsity=0.1, signed_input=True)
    values = matrix[matrix != 0].numpy()
    assert scipy.stats.kstest(values, scipy.stats.uniform(-1, 2).cdf).pvalue > 1e-3  # U[−1, 1)
    assert scipy.stats.kstest(values, scipy.stats.uniform(0, 1).cdf).pvalue < 1e-6  # the test can tell unsigned


def test_input_scaling_scales_the_density_as_in_the_reference():
    matrix = inputs(100, 100, 0, input_sparsity=0.1, input_scaling=2.0)
    assert int(torch.count_nonzero(matrix)) == 2000


def test_same_seed_gives_identical_matrices():
    assert torch.equal(build(seed=7), build(seed=7))
    assert torch.equal(inputs(16, 300, 7), inputs(16, 300, 7))


def test_another_seed_gives_different_matrices():
    assert not torch.equal(build(seed=7), build(seed=8))
    assert not torch.equal(inputs(16, 300, 7), inputs(16, 300, 8))


def test_reference_defaults_are_the_specs():
    assert (REFERENCE.num_nodes, REFERENCE.spectral_radius, REFERENCE.jump_size) == (1000, 0.9, 137)
    assert (REFERENCE.cycle_weight, REFERENCE.jump_weight, REFERENCE.background_weight) == (0.05, 0.5, 0.08)
    assert (REFERENCE.input_sparsity, REFERENCE.input_scaling, REFERENCE.leak_rate) == (0.05, 1.0, 1.0)


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("spectral_radius", -1.0, r"spectral_radius \(α\) = -1.0 is outside the allowed range \(0, inf\)"),
        ("num_nodes", 1, r"num_nodes \(N\) = 1 is outside the allowed range \[2, inf\)"),
        ("leak_rate", 1.5, r"leak_rate \(a\) = 1.5 is outside the allowed range \(0, 1\]"),
        ("input_sparsity", 0.0, r"input_sparsity \(SD\) = 0.0 is outside the allowed range \(0, 1\]"),
        ("jump_size", 1000, r"jump_size \(ℓ\) = 1000 is outside the allowed range \[1, 1000\)"),
        ("input_scaling", 30.0, r"density of V\) = 1.5"),
    ],
)
def test_each_option_is_checked_against_its_range(field, value, allowed):
    with pytest.raises(ConfigError, match=allowed):
        ReservoirOptions(**{field: value})


# --- the reference topology, bit for bit as first implemented -------------------------------------------------


def first_draw_matrices(options: ReservoirOptions, in_features: int, seed: int):
    """`draw_matrices` and `nearly_fully_connected` as they were before other topologies existed (commit 032a567),
    copied with their steps inlined: W (signs, hole, scale by an eigensolve), then V, then b, from one generator."""
    generator = torch.Generator().manual_seed(seed)
    nodes = options.num_nodes
    weight = torch.full((nodes, nodes), options.background_weight, dtype=torch.float64)
    index = torch.arange(nodes)
    weight[(index + 1) % nodes, index] = options.cycle_weight
    for u in range(0, nodes - options.jump_size + 1, options.jump_size):
        v = (u + options.jump_size) % nodes
        weight[u, v] = options.jump_weight
        weight[v, u] = options.jump_weight
    signs = 2 * torch.randint(0, 2, (nodes, nodes), generator=generator, dtype=torch.int64) - 1
    zeroed = int(torch.randint(0, nodes * nodes, (1,), generator=generator).item())
    weight = weight * signs
    weight.view(-1)[zeroed] = 0.0
    weight = weight * (options.spectral_radius / torch.linalg.eigvals(weight).abs().max().item())
    if options.memoryless:
        weight.zero_()
    total = in_features * nodes
    positions = torch.randperm(total, generator=generator)[: round(options.input_density * total)]
    values = torch.rand(len(positions), generator=generator, dtype=torch.float64)
    if options.signed_input:
        values = 2.0 * values - 1.0
    inputs = torch.zeros(total, dtype=torch.float64)
    inputs[positions] = values
    bias = None
    if options.bias_scaling > 0:
        bias = options.bias_scaling * (2.0 * torch.rand(nodes, generator=generator, dtype=torch.float64) - 1.0)
    return weight, inputs.view(in_features, nodes), bias


@pytest.mark.parametrize(
    ("options", "in_features", "seed"),
    [
        ({}, 128, 42),  # the reference reservoir
        ({"topology": "cycle_jumps", "num_nodes": 50, "jump_size": 7, "bias_scaling": 0.3, "signed_input": True}, 8, 3),
        ({"num_nodes": 300, "jump_size": 37, "spectral_radius": 1.2, "memoryless": True, "bias_scaling": 0.1}, 16, 0),
    ],
)
def test_default_topology_draws_w_v_and_b_bit_for_bit_as_first_implemented(options, in_features, seed):
    expected = first_draw_matrices(ReservoirOptions(**options), in_features, seed)
    drawn = draw_matrices(ReservoirOptions(**options), in_features, seed)
    for got, want in zip(drawn, expected, strict=True):
        assert (got is None and want is None) or torch.equal(got, want)
    assert ReservoirOptions().topology == "cycle_jumps"


def test_default_reservoir_bank_holds_the_first_implementations_matrices():
    bank = Reservoir(16, num_nodes=40, jump_size=5, num_reservoirs=3, seed=7, bias_scaling=0.1)
    for index in range(3):
        weight, inputs, bias = first_draw_matrices(bank.options, 16, 7 + index)
        assert torch.equal(bank.weight[index], weight.float())
        assert torch.equal(bank.input_weight[index], inputs.float())
        assert torch.equal(bank.bias[index], bias.float())


# --- the other topologies: each one's defining property ---------------------------------------------------------


def topology(name: str, seed: int = 0, **options) -> torch.Tensor:
    return recurrent_matrix(ReservoirOptions(topology=name, **options), torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", [name for name in TOPOLOGIES if name != "delay_line"])
@pytest.mark.parametrize("alpha", [0.5, 1.3])
def test_every_topology_has_spectral_radius_alpha(name, alpha):
    weights = topology(name, num_nodes=60, jump_size=7, density=0.1, degree=6, spectral_radius=alpha)
    assert weights.dtype == torch.float64 and weights.shape == (60, 60)
    assert numpy_radius(weights) == pytest.approx(alpha, abs=1e-10)


def test_random_sparse_has_exactly_density_times_n_squared_links():
    for nodes, density in ((100, 0.01), (100, 0.2), (37, 0.5)):
        weights = topology("random_sparse", num_nodes=nodes, density=density).numpy()
        assert np.count_nonzero(weights) == round(density * nodes * nodes)


@pytest.mark.parametrize(
    ("distribution", "reference"), [("normal", scipy.stats.norm()), ("uniform", scipy.stats.uniform(-1, 2))]
)
def test_link_values_follow_their_distribution(distribution, reference):
    values = link_weights(5000, torch.Generator().manual_seed(1), distribution).numpy()
    assert scipy.stats.kstest(values, reference.cdf).pvalue > 1e-3
    other = scipy.stats.uniform(-1, 2) if distribution == "normal" else scipy.stats.norm()
    assert scipy.stats.kstest(values, other.cdf).pvalue < 1e-6  # the test can tell the two apart


def test_random_sparse_places_its_values_by_one_permutation_of_the_entries():
    generator = torch.Generator().manual_seed(5)
    weights = random_sparse(20, generator, density=0.25, distribution="uniform")
    replay = torch.Generator().manual_seed(5)
    positions = torch.randperm(400, generator=replay)[:100]
    values = 2.0 * torch.rand(100, generator=replay, dtype=torch.float64) - 1.0
    assert torch.equal(weights.flatten()[positions], values)
    assert np.count_nonzero(weights.numpy()) == 100


def test_random_sparse_without_a_cycle_is_refused_with_the_way_out():
    with pytest.raises(
        ConfigError, match=r"density = 0\.001 at num_nodes = 30 \(1 links\) has no cycle.*Raise density"
    ):
        topology("random_sparse", num_nodes=30, density=0.001)


def test_ring_is_a_single_cycle_of_weight_alpha():
    nodes, alpha = 12, 0.8
    weights = topology("ring", num_nodes=nodes, spectral_radius=alpha).numpy()
    permutation = weights / alpha
    assert set(np.unique(permutation)) == {0.0, 1.0}
    assert (permutation.sum(axis=0) == 1).all() and (permutation.sum(axis=1) == 1).all()  # a permutation matrix
    assert all(permutation[i, (i + 1) % nodes] == 1 for i in range(nodes))  # i → i+1: h_t[i+1] = α·h_{t−1}[i]
    powers = [np.linalg.matrix_power(permutation, power) for power in range(1, nodes + 1)]
    assert np.array_equal(powers[-1], np.eye(nodes))  # one cycle through all N nodes:
    assert all(np.trace(power) == 0 for power in powers[:-1])  # no shorter cycle


def test_delay_line_is_the_ring_without_its_link_back_and_nilpotent():
    nodes, alpha = 12, 0.8
    weights = topology("delay_line", num_nodes=nodes, spectral_radius=alpha).numpy()
    expected = np.zeros((nodes, nodes))
    expected[np.arange(nodes - 1), np.arange(1, nodes)] = alpha
    assert np.array_equal(weights, expected)
    assert np.abs(np.linalg.matrix_power(weights, nodes - 1)).max() > 0
    assert not np.linalg.matrix_power(weights, nodes).any()  # W^N = 0: every eigenvalue is 0
    assert np.linalg.svd(weights, compute_uv=False).max() == pytest.approx(alpha)


def networkx_adjacency(graph: networkx.Graph, nodes: int) -> np.ndarray:
    return networkx.to_numpy_array(graph, nodelist=range(nodes)) > 0


@pytest.mark.parametrize(("nodes", "degree"), [(20, 4), (31, 6), (10, 8)])
def test_watts_strogatz_without_rewiring_is_the_ring_lattice(nodes, degree):
    adjacency = watts_strogatz(nodes, degree, 0.0, torch.Generator().manual_seed(0)).numpy()
    assert np.array_equal(adjacency, networkx_adjacency(networkx.watts_strogatz_graph(nodes, degree, 0.0), nodes))


@pytest.mark.parametrize("probability", [0.1, 1.0])
def test_watts_strogatz_rewiring_keeps_the_degree_sum_and_a_simple_undirected_graph(probability):
    nodes, degree = 60, 6
    adjacency = watts_strogatz(nodes, degree, probability, torch.Generator().manual_seed(3)).numpy()
    lattice = networkx_adjacency(networkx.watts_strogatz_graph(nodes, degree, 0.0), nodes)
    assert adjacency.sum() == nodes * degree  # degree sum N·k: N·k/2 links, each counted at both ends
    assert np.array_equal(adjacency, adjacency.T) and not adjacency.diagonal().any()
    links = nodes * degree // 2
    moved = (adjacency & ~lattice).sum() // 2  # links off the lattice: the rewired ones, but for the few that
    if probability < 1:  # landed on a lattice place freed before them (each about k/N likely)
        assert abs(moved - probability * links) < 4 * np.sqrt(links * probability * (1 - probability))
    else:
        assert moved > 0.8 * links


@pytest.mark.parametrize("name", ["random_sparse", "small_world"])
@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_the_option_weight_distribution_reaches_the_links_of_w(name, distribution):
    """W's link values through the options (scaled to α by one unknown factor): the chosen law fits (its scale
    taken from the values), the other is rejected."""
    weights = topology(name, num_nodes=100, density=0.2, degree=20, weight_distribution=distribution).numpy()
    values = weights[weights != 0]  # 2,000 links
    as_normal = scipy.stats.kstest(values / values.std(), scipy.stats.norm().cdf).pvalue
    as_uniform = scipy.stats.kstest(values / np.abs(values).max(), scipy.stats.uniform(-1, 2).cdf).pvalue
    fits, rejected = (as_normal, as_uniform) if distribution == "normal" else (as_uniform, as_normal)
    assert fits > 1e-3 and rejected < 1e-6


def test_watts_strogatz_draws_networkx_graphs_in_distribution():
    """4,000 graphs each at N = 7, k = 2, p = 0.5 (seeded, so the test is deterministic): every node pair is linked
    as often as in networkx's `watts_strogatz_graph`, within 4 standard errors of the difference. The draws differ
    (networkx redraws a taken target, this picks among the free ones) but the law is the same, and which end of a
    link stays matters: keeping u+j instead of u changes the frequency of the link 0 — 6 by 6 standard errors."""
    nodes, degree, probability, graphs = 7, 2, 0.5, 4000
    ours = np.mean(
        [
            watts_strogatz(nodes, degree, probability, torch.Generator().manual_seed(seed)).numpy()
            for seed in range(graphs)
        ],
        axis=0,
    )
    theirs = np.mean(
        [
            networkx_adjacency(networkx.watts_strogatz_graph(nodes, degree, probability, seed=seed), nodes)
            for seed in range(graphs)
        ],
        axis=0,
    )
    pairs = np.triu_indices(nodes, 1)
    pooled = (ours[pairs] + theirs[pairs]) / 2
    standard_error = np.sqrt(pooled * (1 - pooled) * 2 / graphs)
    assert (np.abs(ours[pairs] - theirs[pairs]) < 4 * standard_error).all()


def test_watts_strogatz_on_a_complete_lattice_moves_nothing_and_draws_one_uniform_per_link():
    """k = N − 1: every node is linked to every other, so no link has anywhere to go; the draws are still one
    uniform per lattice link (N·k/2 = 10), so what the generator gives next (small_world's link values) does not
    depend on how many moves were possible."""
    generator, replay = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    adjacency = watts_strogatz(5, 4, 1.0, generator).numpy()
    assert np.array_equal(adjacency, ~np.eye(5, dtype=bool))
    for _ in range(10):
        torch.rand(1, generator=replay)
    assert torch.equal(generator.get_state(), replay.get_state())


def test_small_world_weights_sit_on_the_graph_and_each_direction_is_drawn_independently():
    weights = topology("small_world", num_nodes=50, degree=4, rewiring_probability=0.2).numpy()
    links = weights != 0
    assert np.array_equal(links, links.T) and links.sum() == 50 * 4
    assert not np.allclose(weights, weights.T)  # not a symmetric W: W[i, j] and W[j, i] are separate draws


def test_small_world_at_p_zero_is_the_weighted_ring_lattice():
    weights = topology("small_world", num_nodes=30, degree=4, rewiring_probability=0.0).numpy()
    assert np.array_equal(weights != 0, networkx_adjacency(networkx.watts_strogatz_graph(30, 4, 0.0), 30))


def test_orthogonal_is_alpha_times_an_orthogonal_matrix():
    alpha = 0.9
    weights = topology("orthogonal", num_nodes=80, spectral_radius=alpha).numpy()
    assert np.allclose(weights.T @ weights, alpha**2 * np.eye(80), atol=1e-12)
    assert np.allclose(np.abs(np.linalg.eigvals(weights)), alpha, atol=1e-10)  # every eigenvalue on the circle α


def test_orthogonal_draws_are_haar_not_biased_by_the_qr_signs():
    """Without the sign fix, Q of a QR has a diagonal biased towards one sign; Haar's has mean 0 entries."""
    diagonals = np.stack(
        [topology("orthogonal", seed, num_nodes=4, spectral_radius=1.0).numpy().diagonal() for seed in range(400)]
    )
    assert abs(diagonals.mean()) < 4 * diagonals.std() / np.sqrt(diagonals.size)


@pytest.mark.parametrize(
    ("matrix", "cyclic"),
    [
        (np.diag(np.ones(5), k=1), False),  # a delay line
        (np.triu(np.ones((6, 6)), k=1), False),  # every forward link, still no way back
        (np.roll(np.eye(7), 1, axis=1), True),  # a ring
        (np.diag([0.0, 0.0, 2.0]), True),  # a self-loop is a cycle
    ],
)
def test_has_cycle_tells_nilpotent_link_patterns(matrix, cyclic):
    assert has_cycle(torch.from_numpy(matrix)) == cyclic
    assert (np.abs(np.linalg.matrix_power(matrix, len(matrix))).max() > 0) == cyclic  # the definition: W^N ≠ 0


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_every_topology_is_a_pure_function_of_its_seed(name):
    options = ReservoirOptions(topology=name, num_nodes=40, jump_size=5, density=0.1, degree=4)
    first, again, other = (recurrent_matrix(options, torch.Generator().manual_seed(seed)) for seed in (1, 1, 2))
    assert torch.equal(first, again)
    assert name in ("ring", "delay_line") or not torch.equal(first, other)  # the two without random draws


def test_every_topology_of_a_seed_shares_v_and_b_and_differs_in_w():
    options = {"num_nodes": 30, "jump_size": 4, "density": 0.1, "degree": 4, "bias_scaling": 0.2}
    drawn = {name: draw_matrices(ReservoirOptions(topology=name, **options), 8, 11) for name in TOPOLOGIES}
    _, inputs, bias = drawn["cycle_jumps"]
    for name, (weight, other_inputs, other_bias) in drawn.items():
        assert torch.equal(other_inputs, inputs) and torch.equal(other_bias, bias), name
        assert name == "cycle_jumps" or not torch.equal(weight, drawn["cycle_jumps"][0])
        torch.manual_seed(99)  # the global generator plays no part: W is the seed's alone
        assert torch.equal(draw_matrices(ReservoirOptions(topology=name, **options), 8, 11)[0], weight), name


def test_memoryless_zeroes_w_of_every_topology():
    for name in TOPOLOGIES:
        weight, _, _ = draw_matrices(ReservoirOptions(topology=name, num_nodes=20, jump_size=3, memoryless=True), 4, 0)
        assert weight.shape == (20, 20) and weight.dtype == torch.float64 and not weight.any()


def test_builders_and_options_name_the_same_topologies():
    assert tuple(BUILDERS) == TOPOLOGIES
    fields = set(ReservoirOptions.__dataclass_fields__)
    assert all(set(options) <= fields for options in TOPOLOGY_OPTIONS.values())


def test_options_a_topology_does_not_read_leave_its_w_unchanged():
    base = {"num_nodes": 30, "jump_size": 5, "density": 0.2, "degree": 4}
    for name, reads in TOPOLOGY_OPTIONS.items():
        changed = {
            option: value
            for option, value in {
                "jump_size": 3,
                "cycle_weight": 0.3,
                "density": 0.5,
                "weight_distribution": "uniform",
                "degree": 8,
                "rewiring_probability": 0.7,
            }.items()
            if option not in reads
        }
        assert torch.equal(topology(name, 4, **base), topology(name, 4, **{**base, **changed})), name


# --- wrong names and options are refused, with what is allowed ---------------------------------------------------


def test_a_wrong_topology_name_is_refused_with_the_allowed_names():
    with pytest.raises(ConfigError) as error:
        ReservoirOptions(topology="rnd_sparse")
    assert str(error.value) == (
        "Reservoir: topology = 'rnd_sparse' is not one of 'cycle_jumps', 'random_sparse', 'ring', 'delay_line', "
        "'small_world', 'orthogonal'."
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"weight_distribution": "laplace"}, r"weight_distribution = 'laplace' is not one of 'normal', 'uniform'\.$"),
        ({"density": 0.0}, r"density = 0.0 is outside the allowed range \(0, 1\]"),
        ({"density": 1.5}, r"density = 1.5 is outside the allowed range \(0, 1\]"),
        ({"rewiring_probability": 1.2}, r"rewiring_probability \(p\) = 1.2 is outside the allowed range \[0, 1\]"),
        ({"degree": 0}, r"degree \(k\) = 0 is outside the allowed range \[2, inf\)"),
        (
            {"topology": "small_world", "num_nodes": 10, "degree": 10},
            r"degree \(k\) = 10 is outside the allowed range \(-inf, 10\)\. "
            r"Choose an even k below num_nodes \(N = 10\)\.$",
        ),
        ({"topology": "small_world", "degree": 5}, r"degree \(k\) = 5 is odd; .* Choose an even k below num_nodes"),
    ],
)
def test_topology_options_are_checked_against_their_ranges(options, message):
    with pytest.raises(ConfigError, match=message):
        ReservoirOptions(**options)


def test_cycle_jumps_options_are_only_checked_for_cycle_jumps():
    with pytest.raises(ConfigError, match="jump_size"):
        ReservoirOptions(num_nodes=100)  # ℓ = 137 ≥ N for the reference topology
    assert ReservoirOptions(num_nodes=100, topology="ring").jump_size == 137  # read by cycle_jumps only
    assert ReservoirOptions(num_nodes=8, topology="orthogonal").degree == 10  # read by small_world only
