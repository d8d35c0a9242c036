"""How sure an accuracy is: intervals over test images and seeds, and paired tests between two models.

An accuracy measured on n test images is a mean of n outcomes (right or wrong); another draw of test images would
give another value, and another seed another model. The intervals here are percentile bootstraps (Efron &
Tibshirani 1993) of those two sources:

- **one run** — over its test images: resampling n images with replacement draws the number right from
  Binomial(n, accuracy) exactly, so that is what is drawn (the same distribution as resampling indices, at no cost);
- **several seeds** — two levels: the seeds are resampled with replacement, then each resampled seed's images. With
  few seeds (3) the seed level is resampled from 3 values, which understates the seed-to-seed spread (a bootstrap of
  n values has variance (n − 1)/n of the truth); the t-interval over seed means is given beside it for that reason.

Two models on the same images are compared **paired**, image by image: with one run each, McNemar's exact test on
the images exactly one of them gets right (a two-sided binomial test of b against b + c, McNemar 1947; Edwards
1948 for the exact form), and a bootstrap of the difference over images (the four kinds of image — both right, only
A, only B, neither — drawn from a multinomial); with several seeds paired by seed, the two-level paired bootstrap of
the difference, its p-value (twice the fraction of resampled differences on the far side of 0), and the exact
sign-flip test over the per-seed differences (with n seeds its smallest p is 2/2ⁿ: 0.25 with 3 seeds, so 3 seeds
can never reject at 5% this way — said, not hidden).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "Interval",
    "PairedDifference",
    "accuracy_interval",
    "mcnemar_exact",
    "p_text",
    "paired_difference",
    "percentile",
    "resampled_means",
    "sign_flip_p",
    "t_interval",
]

LEVEL = 0.95
RESAMPLES = 20_000


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval, and over what it was resampled (`images`, or `seeds × images`)."""

    estimate: float
    low: float
    high: float
    over: str


@dataclass(frozen=True)
class PairedDifference:
    """A − B on the same images: the mean difference in accuracy, its interval, a two-sided p-value and its test."""

    difference: float
    low: float
    high: float
    p: float
    test: str
    seeds: int
    sign_flip_p: float | None = None  # several seeds: the exact test over per-seed differences


def percentile(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def accuracy_interval(
    correct: list[np.ndarray], level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """The mean accuracy of one or several runs (one 0/1 vector of test outcomes per seed) and its percentile
    bootstrap interval: over images for one run, over seeds then images for several."""
    rng = np.random.default_rng(seed)
    sizes = np.array([len(run) for run in correct])
    rights = np.array([int(np.sum(run)) for run in correct])
    estimate = float(np.mean(rights / sizes))
    if len(correct) == 1:
        drawn = rng.binomial(sizes[0], rights[0] / sizes[0], size=resamples) / sizes[0]
        return Interval(estimate, *percentile(drawn, level), "images")
    picked = rng.integers(len(correct), size=(resamples, len(correct)))  # (R, seeds): seeds drawn with replacement
    drawn = rng.binomial(sizes[picked], rights[picked] / sizes[picked]) / sizes[picked]  # (R, seeds)
    return Interval(estimate, *percentile(drawn.mean(axis=1), level), "seeds × images")


def t_interval(values: list[float], level: float = LEVEL) -> Interval | None:
    """mean ± t(n − 1)·sd/√n over seeds (None for fewer than 2)."""
    if len(values) < 2:
        return None
    mean, spread = float(np.mean(values)), float(np.std(values, ddof=1))
    half = stats.t.ppf(1 - (1 - level) / 2, len(values) - 1) * spread / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half, "seeds (t)")


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """McNemar's exact two-sided p: the images only A gets right (b) against those only B does (c), b ~ Bin(b + c,
    ½) under no difference; p = min(1, 2·P(X ≤ min(b, c)))."""
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    return float(min(1.0, 2 * stats.binom.cdf(min(only_a, only_b), discordant, 0.5)))


def p_text(p: float) -> str:
    """A p-value as the tables print it: three significant digits. A bootstrap p of 0 (no resample on the far side of
    0) only says p < 2/R; every bootstrap here draws R ≥ 2,000, so it is written "< 0.001", never as an impossible 0."""
    return "< 0.001" if p == 0 else f"{p:.3g}"


def sign_flip_p(differences: list[float]) -> float:
    """The exact two-sided sign-flip (paired permutation) test of per-seed differences: the fraction of the 2ⁿ sign
    assignments whose |mean| is at least the observed one."""
    values = np.asarray(differences, dtype=float)
    signs = np.array(np.meshgrid(*[[-1, 1]] * len(values))).reshape(len(values), -1).T  # (2ⁿ, n)
    flipped = np.abs((signs * values).mean(axis=1))
    return float(np.mean(flipped >= abs(values.mean()) - 1e-12))


def kinds(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Counts of the four kinds of image: (both right, only A, only B, neither)."""
    a, b = a.astype(bool), b.astype(bool)
    return np.array([np.sum(a & b), np.sum(a & ~b), np.sum(~a & b), np.sum(~a & ~b)])


def paired_difference(
    a: list[np.ndarray], b: list[np.ndarray], level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> PairedDifference:
    """A − B, paired image by image (and seed by seed: a[i] and b[i] are the outcomes of seed i on the same images)."""
    if len(a) != len(b) or any(len(x) != len(y) for x, y in zip(a, b, strict=True)):
        raise ValueError("paired_difference: the two models need the same seeds and the same test images")
    rng = np.random.default_rng(seed)
    counts = np.array([kinds(x, y) for x, y in zip(a, b, strict=True)])  # (seeds, 4)
    sizes = counts.sum(axis=1)
    per_seed = (counts[:, 1] - counts[:, 2]) / sizes
    difference = float(per_seed.mean())
    if len(a) == 1:
        drawn = rng.multinomial(sizes[0], counts[0] / sizes[0], size=resamples)  # (R, 4)
        deltas = (drawn[:, 1] - drawn[:, 2]) / sizes[0]
        low, high = percentile(deltas, level)
        p = mcnemar_exact(int(counts[0, 1]), int(counts[0, 2]))
        return PairedDifference(difference, low, high, p, "McNemar exact", 1)
    picked = rng.integers(len(a), size=(resamples, len(a)))  # (R, seeds)
    deltas = np.empty((resamples, len(a)))
    for column in range(len(a)):
        chosen = picked[:, column]
        for index in np.unique(chosen):
            rows = np.flatnonzero(chosen == index)
            drawn = rng.multinomial(sizes[index], counts[index] / sizes[index], size=len(rows))
            deltas[rows, column] = (drawn[:, 1] - drawn[:, 2]) / sizes[index]
    means = deltas.mean(axis=1)
    low, high = percentile(means, level)
    p = float(min(1.0, 2 * min(np.mean(means <= 0), np.mean(means >= 0))))
    return PairedDifference(
        difference, low, high, p, "paired bootstrap (seeds × images)", len(a), sign_flip_p(list(per_seed))
    )


def resampled_means(
    outcomes: list[np.ndarray], weights: np.ndarray, resamples: int = 2_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A two-level bootstrap of several measures on the same images: `outcomes[s]` is seed s's (measures, N) matrix
    (e.g. one row per corruption cell, or A − B per cell), its images resampled jointly across the rows — the rows
    are the same images, corrupted — and the seeds resampled too when there are several. Returns the resampled
    row means (R, measures) and their `weights`-weighted average (R,), e.g. the mean over the benchmark cells."""
    rng = np.random.default_rng(seed)
    measures, size = outcomes[0].shape
    rows = np.zeros((resamples, measures))
    picked = rng.integers(len(outcomes), size=(resamples, len(outcomes))) if len(outcomes) > 1 else None
    for position in range(len(outcomes)):
        chosen = np.zeros(resamples, dtype=int) if picked is None else picked[:, position]
        counts = rng.multinomial(size, np.full(size, 1 / size), size=resamples).astype(np.float32)  # (R, N)
        for index in range(len(outcomes)):
            mask = chosen == index
            if mask.any():
                rows[mask] += counts[mask] @ outcomes[index].T.astype(np.float32) / size
    rows /= len(outcomes)
    return rows, rows @ (weights / weights.sum())
