"""The uniform fake quantisers against hand-computed grids and plain float64 loops over the formulas of
`quantizers.py`'s docstring (written out per element and per candidate, sharing no code with the module)."""

from __future__ import annotations

import math

import pytest
import torch

from lit_vir.quantization.observers import RowSample
from lit_vir.quantization.quantizers import (
    CLIP_RATIOS,
    ActivationQuantizer,
    SegmentedQuantizer,
    UniformGrid,
    fake_quantize,
    output_error,
    quantize_weight,
    signed_levels,
    weight_scales,
)


def observed(quantizer, rows: torch.Tensor):
    """`quantizer` (an activation or a segmented one) after calibration on `rows`, as `calibration.observe`."""
    parts = [module for module in quantizer.modules() if isinstance(module, ActivationQuantizer)]
    for part in parts:
        part.observing = True
    quantizer(rows)
    for part in parts:
        part.observing = False
    return quantizer


def quantized_value(value: float, scale: float, zero_point: int, low: int, high: int) -> float:
    """One number onto its grid, in Python floats (round half to even, as torch.round)."""
    code = min(max(round(value / scale) + zero_point, low), high)
    return (code - zero_point) * scale


def grid_error(rows: torch.Tensor, scale: float, zero_point: int, low: int, high: int, weight) -> float:
    """Mean over rows and outputs of ((Q(x) − x)·Wᵀ)², or of (Q(x) − x)² without a weight, by loops."""
    total, count = 0.0, 0
    for row in rows.tolist():
        difference = [quantized_value(v, scale, zero_point, low, high) - v for v in row]
        outputs = (
            difference
            if weight is None
            else [sum(d * w for d, w in zip(difference, line, strict=True)) for line in weight]
        )
        total += sum(o * o for o in outputs)
        count += len(outputs)
    return total / count


def test_signed_levels_are_the_twos_complement_codes():
    assert [signed_levels(bits) for bits in (2, 4, 8)] == [(-2, 1), (-8, 7), (-128, 127)]


def test_clip_ratios_run_from_the_full_range_to_three_tenths_in_steps_of_five_hundredths():
    assert len(CLIP_RATIOS) == 15
    assert all(math.isclose(ratio, (100 - 5 * step) / 100, abs_tol=1e-12) for step, ratio in enumerate(CLIP_RATIOS))


def test_fake_quantize_of_hand_computed_values():
    values = torch.tensor([0.26, -0.74, 5.0, -5.0], dtype=torch.float64)
    # Δ 0.5, z 1, codes [0, 7]: 0.52 → 1 + 1 = 2 → 0.5; −1.48 → −1 + 1 = 0 → −0.5; 10 + 1 → 7 → 3; −10 + 1 → 0 → −0.5
    expected = torch.tensor([0.5, -0.5, 3.0, -0.5], dtype=torch.float64)
    assert torch.equal(fake_quantize(values, 0.5, 1, 0, 7), expected)
    assert torch.equal(UniformGrid(0.5, 1, 0, 7)(values), expected)


def test_weight_scales_are_the_channel_maxima_over_the_top_code():
    weight = torch.tensor([[1.0, -3.0], [0.5, 0.25], [0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(weight_scales(weight, 4), torch.tensor([3 / 7, 0.5 / 7, 1e-8 / 7], dtype=torch.float64))
    conv = torch.zeros(2, 3, 2, 2, dtype=torch.float64)
    conv[0, 2, 1, 0], conv[1, 0, 0, 1] = -6.0, 2.0  # each output channel's largest |w| anywhere in (in, k, k)
    assert torch.allclose(weight_scales(conv, 3), torch.tensor([6 / 3, 2 / 3], dtype=torch.float64))


@pytest.mark.parametrize(("bits", "shape"), [(4, (5, 7)), (3, (4, 2, 3, 3)), (8, (3, 6))])
def test_quantize_weight_equals_a_per_element_loop(bits, shape):
    weight = torch.randn(*shape, generator=torch.Generator().manual_seed(bits), dtype=torch.float64)
    top = 2 ** (bits - 1) - 1
    expected = torch.empty_like(weight)
    for channel in range(shape[0]):
        values = weight[channel].flatten().tolist()
        scale = max(abs(v) for v in values) / top
        expected[channel] = torch.tensor(
            [quantized_value(v, scale, 0, -top - 1, top) for v in values], dtype=torch.float64
        ).view(shape[1:])
    assert torch.allclose(quantize_weight(weight, bits), expected, atol=1e-12, rtol=0)


def test_output_error_of_a_hand_computed_difference():
    original = torch.zeros(2, 2, dtype=torch.float64)
    quantized = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    assert output_error(quantized, original) == 1.25  # (1 + 0 + 0 + 4) / 4
    weight = torch.tensor([[1.0, 1.0], [1.0, -2.0], [0.0, 3.0]], dtype=torch.float64)
    # rows of D·Wᵀ: (1, 1, 0) and (2, −4, 6): (1 + 1 + 0 + 4 + 16 + 36) / 6
    assert output_error(quantized, original, weight) == pytest.approx(58 / 6, abs=1e-12)


def test_symmetric_candidates_shrink_the_largest_magnitude():
    rows = torch.tensor([[0.5, -2.0], [1.0, 0.25]], dtype=torch.float64)
    grids = ActivationQuantizer("symmetric").candidates(4, rows)
    assert [(g.zero_point, g.low, g.high) for g in grids] == [(0, -8, 7)] * 15
    assert all(
        math.isclose(g.scale, ratio * 2.0 / 7, rel_tol=1e-12) for g, ratio in zip(grids, CLIP_RATIOS, strict=True)
    )
    zeros = ActivationQuantizer("symmetric").candidates(4, torch.zeros(2, 3))
    assert [g.scale for g in zeros] == [1e-8] * 15  # all-zero rows still get a valid grid


def test_asymmetric_candidates_keep_zero_on_the_grid():
    rows = torch.tensor([[-1.0, 3.0], [0.5, 2.0]], dtype=torch.float64)
    grids = ActivationQuantizer("asymmetric").candidates(2, rows)
    for grid, ratio in zip(grids, CLIP_RATIOS, strict=True):
        scale = ratio * 4.0 / 3  # the range [−1, 3] shrunk by the ratio over codes [0, 3]
        assert math.isclose(grid.scale, scale, rel_tol=1e-12)
        assert (grid.zero_point, grid.low, grid.high) == (round(ratio * 1.0 / scale), 0, 3) == (1, 0, 3)
    positive = ActivationQuantizer("asymmetric").candidates(3, torch.tensor([[0.5, 2.0]]))
    assert all(
        math.isclose(g.scale, r * 2.0 / 7, rel_tol=1e-6) and g.zero_point == 0
        for g, r in zip(positive, CLIP_RATIOS, strict=True)
    )
    negative = ActivationQuantizer("asymmetric").candidates(3, torch.tensor([[-0.5, -2.0]]))
    assert all(
        math.isclose(g.scale, r * 2.0 / 7, rel_tol=1e-6) and g.zero_point == 7
        for g, r in zip(negative, CLIP_RATIOS, strict=True)
    )


@pytest.mark.parametrize(("kind", "with_weight"), [("symmetric", False), ("symmetric", True), ("asymmetric", True)])
def test_fit_picks_the_candidate_of_least_consumer_error(kind, with_weight):
    generator = torch.Generator().manual_seed(3)
    rows = torch.randn(40, 6, generator=generator, dtype=torch.float64) ** 3  # heavy tails: clipping pays
    rows = rows.abs() if kind == "asymmetric" else rows
    weight = torch.randn(4, 6, generator=generator, dtype=torch.float64) if with_weight else None
    lines = None if weight is None else weight.tolist()
    # 4 bits: symmetric codes [−8, 7] over max|x|; asymmetric codes [0, 15] over [0, max x] (zero point 0)
    low, high = (-8, 7) if kind == "symmetric" else (0, 15)
    reach = float(rows.abs().max())
    errors = {ratio: grid_error(rows, ratio * reach / high, 0, low, high, lines) for ratio in CLIP_RATIOS}
    best = min(errors, key=errors.get)
    assert best < 1.0  # the heavy tail makes a clipped grid the best, so the search matters
    quantizer = observed(ActivationQuantizer(kind), rows)
    quantizer.set_bits(4, weight)
    assert math.isclose(quantizer.fitted[4].scale, best * reach / high, rel_tol=1e-12)
    expected = [[quantized_value(v, best * reach / high, 0, low, high) for v in row] for row in rows.tolist()]
    assert torch.allclose(quantizer(rows), torch.tensor(expected, dtype=torch.float64), atol=1e-12, rtol=0)


def test_activation_quantizer_states_float_observing_and_cached_grids():
    quantizer = ActivationQuantizer("asymmetric")
    values = torch.tensor([[0.0, 1.0, 3.0]])
    assert not quantizer.calibrated and quantizer.parameter_count == 0
    assert quantizer(values) is values  # float until a width is set
    with pytest.raises(RuntimeError) as error:
        ActivationQuantizer().set_bits(2)
    assert str(error.value) == (
        "ActivationQuantizer: no calibration data; run `lit_vir.quantization.calibrated_copy` (or `observe`) on "
        "calibration images before choosing a bit width."
    )
    observed(quantizer, values)
    assert quantizer.calibrated and quantizer.bits is None
    quantizer.set_bits(2)
    grid = quantizer.fitted[2]
    assert (quantizer.bits, quantizer.parameter_count) == (2, 2)  # a scale and a zero point
    assert quantizer.extra_repr() == "kind=asymmetric, bits=2"
    quantizer.fitted[2] = UniformGrid(10.0, 0, 0, 3)  # a cached grid is used, not refitted
    quantizer.set_bits(2)
    assert torch.equal(quantizer(values), torch.zeros(1, 3))
    quantizer.set_bits(None)  # `observe` calibrates in float
    observed(quantizer, values)  # new calibration data forgets every fitted grid
    assert quantizer.fitted == {}
    quantizer.set_bits(2)
    assert quantizer.fitted[2] == grid
    quantizer.set_bits(None)
    assert quantizer(values) is values and quantizer.parameter_count == 0
    symmetric = observed(ActivationQuantizer("symmetric"), values)
    symmetric.set_bits(4)
    assert symmetric.parameter_count == 1 and symmetric.fitted[4].zero_point == 0


def test_activation_quantizer_rejects_an_unknown_kind():
    with pytest.raises(ValueError) as error:
        ActivationQuantizer("logarithmic")
    assert str(error.value) == "ActivationQuantizer: kind = 'logarithmic' is not one of 'symmetric', 'asymmetric'."


def test_activation_quantizer_defaults():
    quantizer = ActivationQuantizer()
    assert quantizer.kind == "symmetric" and quantizer.bits is None and quantizer.observing is False
    assert quantizer.sample.max_values == 2**20 and quantizer.sample.generator.initial_seed() == 0
    assert ActivationQuantizer(max_values=64, seed=5).sample.generator.initial_seed() == 5
    assert quantizer.values_per_image == 0.0 and quantizer.fitted == {}


def test_segmented_quantizer_fits_each_segment_on_its_own_rows_and_weight_columns():
    generator = torch.Generator().manual_seed(5)
    rows = torch.cat([torch.randn(30, 2, generator=generator) * 10, torch.rand(30, 3, generator=generator)], dim=1)
    weight = torch.randn(4, 5, generator=generator)
    segmented = observed(SegmentedQuantizer([2, 0, 3], ["symmetric", "symmetric", "asymmetric"]), rows)
    assert segmented.widths == [2, 3] and len(segmented.parts) == 2  # the empty segment has no quantiser
    segmented.set_bits(3, weight)
    first = observed(ActivationQuantizer("symmetric"), rows[:, :2])
    second = observed(ActivationQuantizer("asymmetric"), rows[:, 2:])
    first.set_bits(3, weight[:, :2])
    second.set_bits(3, weight[:, 2:])
    assert segmented.parts[0].fitted[3] == first.fitted[3] and segmented.parts[1].fitted[3] == second.fitted[3]
    assert torch.equal(segmented(rows), torch.cat([first(rows[:, :2]), second(rows[:, 2:])], dim=1))
    segmented.set_bits(None)
    assert torch.equal(segmented(rows), rows)
    segmented.set_bits(2)  # no consumer weight: each segment's own error
    alone = observed(ActivationQuantizer("asymmetric"), rows[:, 2:])
    alone.set_bits(2)
    assert segmented.parts[1].fitted[2] == alone.fitted[2]


def test_segmented_quantizer_needs_a_kind_per_width():
    with pytest.raises(ValueError) as error:
        SegmentedQuantizer([2, 3], ["symmetric"])
    assert str(error.value) == "SegmentedQuantizer: 2 widths but 1 kinds."


def test_a_segment_one_column_wide_gets_its_own_quantizer():
    rows = torch.tensor([[5.0, 0.1, -0.2], [-4.0, 0.3, 0.05]])
    segmented = observed(SegmentedQuantizer([1, 2], ["symmetric", "symmetric"]), rows)
    assert segmented.widths == [1, 2] and len(segmented.parts) == 2
    segmented.set_bits(8)
    narrow = observed(ActivationQuantizer("symmetric"), rows[:, 1:])
    narrow.set_bits(8)
    assert torch.equal(segmented(rows)[:, 1:], narrow(rows[:, 1:]))


def test_a_failed_fit_leaves_the_quantizer_at_its_previous_precision():
    quantizer = ActivationQuantizer()  # no calibration rows reached it
    with pytest.raises(RuntimeError):
        quantizer.set_bits(8)
    assert quantizer.bits is None and quantizer.parameter_count == 0
    values = torch.linspace(-1, 1, 7)
    assert torch.equal(quantizer(values), values)  # still float, not a half-set 8-bit site


# --- the calibration sample -------------------------------------------------------------------------------------


def test_the_row_sample_keeps_the_rows_with_the_smallest_seeded_keys_over_every_batch():
    """Each row seen gets a U[0, 1) key, drawn in order from the sample's seeded generator; the sample is the
    max_values // features rows of smallest key over everything seen, smallest first."""
    generator = torch.Generator().manual_seed(2)
    batches = [torch.randn(5, 4, generator=generator), torch.randn(2, 3, 4, generator=generator), torch.randn(9, 4)]
    sample = RowSample(max_values=30, seed=7)  # 30 // 4 = 7 rows
    for batch in batches:
        sample.add(batch)
    rows = torch.cat([batch.reshape(-1, 4) for batch in batches])  # (20, 4)
    keys = torch.rand(20, generator=torch.Generator().manual_seed(7))  # one draw per row, batch after batch
    order = keys.argsort()[:7]
    assert torch.equal(sample.rows, rows[order]) and torch.equal(sample.keys, keys[order])
    assert sample.seen == 80  # every number passed, kept or not
    sample.clear()
    assert (sample.rows, sample.keys, sample.seen) == (None, None, 0)


def test_the_row_sample_keeps_everything_up_to_its_capacity_in_arrival_order_and_one_row_at_least():
    rows = torch.arange(24.0).view(6, 4)
    full = RowSample(max_values=24)
    full.add(rows[:4])
    full.add(rows[4:])
    assert torch.equal(full.rows, rows) and full.seen == 24  # exactly at capacity: nothing dropped or reordered
    narrow = RowSample(max_values=3)  # fewer numbers than one row holds: one row is kept
    narrow.add(rows)
    keys = torch.rand(6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(narrow.rows, rows[keys.argmin()][None])


def test_the_row_sample_draws_its_keys_on_the_generators_device():
    rows = torch.randn(50, 4, generator=torch.Generator().manual_seed(3))
    expected = RowSample(max_values=40)
    expected.add(rows)
    with torch.device("meta"):  # a default device other than the CPU's (a user's GPU)
        placed = RowSample(max_values=40)
        placed.add(rows)
    assert torch.equal(placed.rows, expected.rows)
