"""The reservoir's fixed matrices are built exactly as the spec's six steps say."""

import pytest
import torch

from lit_vir.models.topology import (
    cycle_with_jumps,
    input_matrix,
    nearly_fully_connected,
    spectral_radius,
)


def build(seed: int = 0, nodes: int = 300, **options) -> torch.Tensor:
    return nearly_fully_connected(nodes, torch.Generator().manual_seed(seed), jump_size=37, **options)


def test_spectral_radius_matches_alpha():
    for alpha in (0.5, 0.9, 1.3):
        assert spectral_radius(build(spectral_radius=alpha)) == pytest.approx(alpha, abs=1e-4)


def test_reference_size_spectral_radius_matches_alpha():
    weights = nearly_fully_connected(1000, torch.Generator().manual_seed(42))
    assert spectral_radius(weights) == pytest.approx(0.9, abs=1e-4)


def test_cycle_entries_where_the_spec_puts_them():
    pattern = cycle_with_jumps(10, cycle_weight=0.05, jump_weight=0.5, background_weight=0.08, jump_size=4)
    for node in range(9):
        assert pattern[node + 1, node] == 0.05
    assert pattern[0, 9] == 0.05


def test_jump_entries_are_two_way_every_jump_size_and_wrap_to_node_zero():
    pattern = cycle_with_jumps(12, cycle_weight=0.05, jump_weight=0.5, background_weight=0.08, jump_size=4)
    jumps = {(0, 4), (4, 8), (8, 0)}  # u = 0, 4, 8 while u + ℓ ≤ 12; 8 + 4 = 12 wraps to 0
    expected = torch.full((12, 12), 0.08, dtype=torch.float64)
    for node in range(12):
        expected[(node + 1) % 12, node] = 0.05
    for u, v in jumps:
        expected[u, v] = expected[v, u] = 0.5
    assert torch.equal(pattern, expected)


def test_magnitudes_follow_the_pattern_after_signs_and_scaling():
    generator = torch.Generator().manual_seed(3)
    weights = nearly_fully_connected(50, generator, jump_size=7, spectral_radius=0.9)
    pattern = cycle_with_jumps(50, jump_size=7)
    ratio = weights.abs() / pattern
    nonzero = ratio[weights != 0]
    assert torch.allclose(nonzero, nonzero[0].expand_as(nonzero))  # one common scale factor
    signs = torch.sign(weights[weights != 0])
    assert 0.4 < (signs > 0).double().mean() < 0.6  # independent ±1 with p = ½


def test_exactly_one_entry_is_zero():
    weights = build()
    assert int((weights == 0).sum()) == 1
    assert weights.numel() - int(torch.count_nonzero(weights)) == 1


def test_input_matrix_density_is_input_sparsity():
    matrix = input_matrix(128, 1000, torch.Generator().manual_seed(0), input_sparsity=0.05)
    assert int(torch.count_nonzero(matrix)) == round(0.05 * 128 * 1000)
    assert matrix.min() >= 0 and matrix.max() < 1  # U[0, 1): non-negative as in the reference


def test_signed_input_matrix_has_both_signs():
    matrix = input_matrix(64, 200, torch.Generator().manual_seed(0), input_sparsity=0.1, signed=True)
    values = matrix[matrix != 0]
    assert values.min() < -0.5 and values.max() > 0.5 and values.abs().max() <= 1


def test_input_scaling_scales_the_density_as_in_the_reference():
    matrix = input_matrix(100, 100, torch.Generator().manual_seed(0), input_sparsity=0.1, input_scaling=2.0)
    assert int(torch.count_nonzero(matrix)) == 2000


def test_same_seed_gives_identical_matrices():
    assert torch.equal(build(seed=7), build(seed=7))
    first = input_matrix(16, 300, torch.Generator().manual_seed(7))
    assert torch.equal(first, input_matrix(16, 300, torch.Generator().manual_seed(7)))


def test_another_seed_gives_different_matrices():
    assert not torch.equal(build(seed=7), build(seed=8))
    first = input_matrix(16, 300, torch.Generator().manual_seed(7))
    assert not torch.equal(first, input_matrix(16, 300, torch.Generator().manual_seed(8)))
