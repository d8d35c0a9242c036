"""Intervals and paired tests (lit_vir.analysis.uncertainty) against hand computations, scipy and a second method."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lit_vir.analysis.uncertainty import (
    accuracy_interval,
    mcnemar_exact,
    p_text,
    paired_difference,
    resampled_means,
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


def test_the_documented_defaults_are_the_ones_used():
    """95%, 20 000 resamples and seed 0 (a rerun gives the same interval), 2 000 resamples for the joint bootstrap."""
    run = outcomes(853, 1000)
    assert accuracy_interval([run]) == accuracy_interval([run], level=0.95, resamples=20_000, seed=0)
    assert accuracy_interval([run, run]) == accuracy_interval([run, run], level=0.95, resamples=20_000, seed=0)
    other = outcomes(800, 1000, 5)
    assert paired_difference([run], [other]) == paired_difference([run], [other], 0.95, 20_000, 0)
    assert paired_difference([run] * 2, [other] * 2) == paired_difference([run] * 2, [other] * 2, 0.95, 20_000, 0)
    rows, _ = resampled_means([np.stack([run, other])], np.ones(2))
    again, _ = resampled_means([np.stack([run, other])], np.ones(2), resamples=2_000, seed=0)
    assert rows.shape == (2_000, 2) and np.array_equal(rows, again)


def test_a_lower_level_narrows_the_intervals_as_its_quantiles_say():
    run = outcomes(853, 1000)
    interval = accuracy_interval([run], level=0.90, resamples=40_000)
    half = 1.644854 * np.sqrt(0.853 * 0.147 / 1000)  # z(0.95) for a 90% interval
    assert (interval.low, interval.high) == pytest.approx((0.853 - half, 0.853 + half), abs=0.003)
    seeds = t_interval([0.85, 0.88, 0.91], level=0.90)
    half = 2.919986 * 0.03 / np.sqrt(3)  # t(2, 0.95)
    assert (seeds.estimate, seeds.low, seeds.high, seeds.over) == pytest.approx(
        (0.88, 0.88 - half, 0.88 + half, "seeds (t)")
    )


def test_two_seeds_already_give_a_t_interval():
    interval = t_interval([0.80, 0.90])
    half = 12.706205 * np.sqrt(0.005) / np.sqrt(2)  # t(1, 0.975) · sd / √2, sd = √(0.005)
    assert interval.estimate == pytest.approx(0.85) and interval.over == "seeds (t)"
    assert (interval.low, interval.high) == pytest.approx((0.85 - half, 0.85 + half), abs=1e-6)


def test_the_refusal_says_what_pairing_needs():
    with pytest.raises(
        ValueError, match=r"^paired_difference: the two models need the same seeds and the same test images$"
    ):
        paired_difference([outcomes(5, 10)], [outcomes(5, 10), outcomes(5, 10)])


def test_several_paired_seeds_match_an_explicit_two_level_resampling():
    """Seeds 1 point below, 1 and 3 points above B on 600 images: the interval and p of the two-level paired bootstrap
    against the same two levels written out with index resampling (a second method)."""
    rng = np.random.default_rng(7)
    a, b = [], []
    for only_a, only_b in ((24, 30), (36, 30), (48, 30)):  # Δ = −1, +1, +3 points
        kinds_of_image = np.array([0] * (400 - only_a - only_b) + [1] * only_a + [2] * only_b + [3] * 200)
        kinds_of_image = rng.permutation(kinds_of_image)
        a.append(np.isin(kinds_of_image, (0, 1)).astype(np.int8))
        b.append(np.isin(kinds_of_image, (0, 2)).astype(np.int8))
    result = paired_difference(a, b, resamples=20_000)
    assert result.difference == pytest.approx(1 / 100) and result.seeds == 3
    assert result.test == "paired bootstrap (seeds × images)"
    second = np.random.default_rng(8)
    draws = []
    for _ in range(4000):
        picked = second.integers(3, size=3)
        images = second.integers(600, size=(3, 600))
        draws.append(np.mean([(a[i][idx] - b[i][idx]).mean() for i, idx in zip(picked, images, strict=True)]))
    draws = np.array(draws)
    low, high = np.quantile(draws, [0.025, 0.975])
    assert (result.low, result.high) == pytest.approx((low, high), abs=0.004)
    expected_p = 2 * min(np.mean(draws <= 0), np.mean(draws >= 0))
    assert 0.05 < expected_p < 0.6 and result.p == pytest.approx(expected_p, abs=0.04)
    assert result.sign_flip_p == pytest.approx(sign_flip_p([-0.01, 0.01, 0.03]))


def test_a_single_pair_is_one_seed():
    result = paired_difference([outcomes(700, 1000)], [outcomes(650, 1000, 2)])
    assert result.seeds == 1 and result.sign_flip_p is None and result.test == "McNemar exact"


def test_the_joint_bootstrap_resamples_the_same_images_in_every_row():
    """One seed: a row of k of N right resamples like Binomial(N, k/N)/N; a row and its complement are the same
    images, so their resampled means sum to 1 exactly; the weights average the rows."""
    run = outcomes(300, 1000).astype(float)
    rows, average = resampled_means([np.stack([run, 1 - run])], np.array([3.0, 1.0]), resamples=8000)
    assert np.allclose(rows.sum(axis=1), 1.0, atol=1e-5)  # the same resampled images in both rows
    assert rows[:, 0].mean() == pytest.approx(0.3, abs=0.002)
    assert rows[:, 0].std() == pytest.approx(np.sqrt(0.3 * 0.7 / 1000), rel=0.05)
    assert np.allclose(average, (3 * rows[:, 0] + rows[:, 1]) / 4)


def test_the_joint_bootstrap_resamples_the_seeds_too():
    """Two seeds, one right on every image and one wrong on every image: each resample picks seeds with replacement,
    so the mean is 0, ½ or 1 with probabilities ¼, ½, ¼ (by hand), the same in every row."""
    right, wrong = np.ones((2, 50)), np.zeros((2, 50))
    rows, average = resampled_means([right, wrong], np.ones(2), resamples=8000)
    assert np.allclose(rows[:, 0], rows[:, 1]) and np.allclose(average, rows[:, 0])
    values, counts = np.unique(np.round(rows[:, 0], 6), return_counts=True)
    assert list(values) == [0.0, 0.5, 1.0]
    assert counts / 8000 == pytest.approx([0.25, 0.5, 0.25], abs=0.02)


def test_a_bootstrap_p_of_zero_is_printed_as_a_bound():
    """No resample on the far side of 0 among R ≥ 2,000 means p < 2/R ≤ 0.001, not p = 0."""
    assert p_text(0.0) == "< 0.001"
    assert (p_text(0.0002), p_text(0.25), p_text(1.0), p_text(0.123456)) == ("0.0002", "0.25", "1", "0.123")
