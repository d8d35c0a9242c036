"""The reservoir's fixed matrices are built exactly as the spec's six steps say."""

import pytest
import torch

from lit_vir.checks import ConfigError
from lit_vir.models.reservoir_options import ReservoirOptions
from lit_vir.models.topology import (
    cycle_with_jumps,
    input_matrix,
    nearly_fully_connected,
    scale_to_spectral_radius,
    signs_and_hole,
    spectral_radius,
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


def test_spectral_radius_matches_alpha():
    for alpha in (0.5, 0.9, 1.3):
        assert spectral_radius(build(spectral_radius=alpha)) == pytest.approx(alpha, abs=1e-4)


def test_reference_size_spectral_radius_matches_alpha():
    weights = nearly_fully_connected(REFERENCE, torch.Generator().manual_seed(42))
    assert spectral_radius(weights) == pytest.approx(0.9, abs=1e-4)


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
    signs = torch.sign(weights[weights != 0])
    assert 0.4 < (signs > 0).double().mean() < 0.6  # independent ±1 with p = ½


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
    assert matrix.min() >= 0 and matrix.max() < 1  # U[0, 1): non-negative as in the reference


def test_signed_input_matrix_has_both_signs():
    matrix = inputs(64, 200, 0, input_sparsity=0.1, signed_input=True)
    values = matrix[matrix != 0]
    assert values.min() < -0.5 and values.max() > 0.5 and values.abs().max() <= 1


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
        ("jump_size", 1000, r"jump_size \(ℓ\) = 1000 is outside the allowed range \(-inf, 1000\)"),
        ("input_scaling", 30.0, r"density of V\) = 1.5"),
    ],
)
def test_each_option_is_checked_against_its_range(field, value, allowed):
    with pytest.raises(ConfigError, match=allowed):
        ReservoirOptions(**{field: value})
