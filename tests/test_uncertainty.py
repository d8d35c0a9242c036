"""Intervals and paired tests (lit_vir.analysis.uncertainty) against hand computations, scipy and a second method."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lit_vir.analysis.uncertainty import (
    accuracy_interval,
    mcnemar_exact,
    paired_difference,
    sign_flip_p,
    t_interval,
)


def outcomes(right: int, total: int, seed: int = 0) -> np.ndarray:
    vector = np.zeros(total, dtype=np.int8)
    vector[:right] = 1
    return np.random.default_rng(seed).permutation(vector)


def test_mcnemar_exact_equals_the_binomial_tail_by_hand():
    # b = 10 images only A gets right, c = 2 only B: p = 2·P(X ≤ 2), X ~ Bin(12, ½) = 2·(1 + 12 + 66)/4096
    assert mcnemar_exact(10, 2) == pytest.approx(158 / 4096, rel=1e-12)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)
    assert mcnemar_exact(10, 2) == pytest.approx(stats.binomtest(2, 12, 0.5).pvalue, rel=1e-12)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == 1.0


def test_the_sign_flip_test_counts_sign_assignments():
    # 3 positive differences: only all-plus and all-minus reach |mean| ≥ observed: 2 of 8
    assert sign_flip_p([0.01, 0.02, 0.03]) == pytest.approx(2 / 8)
    # the observed mean is 0: every one of the 8 assignments has |mean| ≥ 0
    assert sign_flip_p([0.01, 0.02, -0.03]) == 1.0


def test_one_run_interval_matches_resampling_the_images_and_the_normal_approximation():
    correct = outcomes(853, 1000)
    interval = accuracy_interval([correct], resamples=40_000)
    assert interval.estimate == 0.853 and interval.over == "images"
    # a second method: resample image indices (the textbook bootstrap), 20 000 times
    rng = np.random.default_rng(1)
    means = correct[rng.integers(1000, size=(20_000, 1000))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    assert interval.low == pytest.approx(low, abs=0.003) and interval.high == pytest.approx(high, abs=0.003)
    # and the normal approximation p ± 1.96·sqrt(p(1 − p)/n) = 0.853 ± 0.02195
    half = 1.959964 * np.sqrt(0.853 * 0.147 / 1000)
    assert interval.low == pytest.approx(0.853 - half, abs=0.003) and interval.high == pytest.approx(
        0.853 + half, abs=0.003
    )


def test_several_seeds_resample_seeds_then_images():
    runs = [outcomes(right, 2000, seed) for seed, right in enumerate((1700, 1760, 1820))]
    interval = accuracy_interval(runs, resamples=20_000)
    assert interval.estimate == pytest.approx((0.85 + 0.88 + 0.91) / 3) and interval.over == "seeds × images"
    # a second method: the same two levels with explicit index resampling
    rng = np.random.default_rng(2)
    draws = []
    for _ in range(4000):
        picked = rng.integers(3, size=3)
        draws.append(np.mean([runs[i][rng.integers(2000, size=2000)].mean() for i in picked]))
    low, high = np.quantile(draws, [0.025, 0.975])
    assert interval.low == pytest.approx(low, abs=0.004) and interval.high == pytest.approx(high, abs=0.004)
    # wider than any one run's interval over images: the seeds differ by 3 points
    assert interval.high - interval.low > 2 * (accuracy_interval([runs[1]]).high - accuracy_interval([runs[1]]).low)


def test_the_t_interval_over_seeds_by_hand():
    interval = t_interval([0.85, 0.88, 0.91])
    half = 4.302653 * 0.03 / np.sqrt(3)  # t(2, 0.975) · sd / √3, sd = 0.03
    assert (interval.low, interval.high) == pytest.approx((0.88 - half, 0.88 + half), abs=1e-6)
    assert t_interval([0.9]) is None


def test_a_run_compared_with_itself_differs_by_zero_with_p_one():
    run = outcomes(700, 1000)
    one = paired_difference([run], [run])
    assert (one.difference, one.low, one.high, one.p) == (0.0, 0.0, 0.0, 1.0) and one.test == "McNemar exact"
    several = paired_difference([run, outcomes(650, 1000, 3)], [run, outcomes(650, 1000, 3)])
    assert (several.difference, several.low, several.high, several.p, several.sign_flip_p) == (0, 0, 0, 1.0, 1.0)


def test_a_paired_difference_on_known_images():
    # 1000 images: both right on 800, only A on 60, only B on 20, neither on 120 → Δ = +4 points
    a = np.array([1] * 800 + [1] * 60 + [0] * 20 + [0] * 120)
    b = np.array([1] * 800 + [0] * 60 + [1] * 20 + [0] * 120)
    result = paired_difference([a], [b], resamples=40_000)
    assert result.difference == pytest.approx(0.04)
    assert result.p == pytest.approx(2 * stats.binom.cdf(20, 80, 0.5), rel=1e-12)  # McNemar on (60, 20)
    # the paired bootstrap interval against the normal approximation of the paired difference:
    # Var(Δ) = [(b + c) − (b − c)²/n] / n² = (80 − 1.6)/10⁶
    half = 1.959964 * np.sqrt((80 - 40**2 / 1000) / 1000**2)
    assert (result.low, result.high) == pytest.approx((0.04 - half, 0.04 + half), abs=0.002)


def test_seeds_are_paired_seed_by_seed():
    a = [outcomes(900, 1000, seed) for seed in range(3)]
    b = [np.where(np.arange(1000) < 50, 0, run) for run in a]  # B loses the first 50 images A had (some right)
    result = paired_difference(a, b)
    expected = np.mean([run[:50].sum() / 1000 for run in a])
    assert result.difference == pytest.approx(expected) and result.seeds == 3
    assert result.low > 0 and result.p < 0.001  # every resample favours A
    assert result.sign_flip_p == pytest.approx(2 / 8)  # and 3 seeds can never give less


def test_unpaired_inputs_are_refused():
    with pytest.raises(ValueError, match="same seeds and the same test images"):
        paired_difference([outcomes(5, 10)], [outcomes(5, 11)])
