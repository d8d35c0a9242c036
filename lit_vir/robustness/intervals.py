"""How sure a corruption result is: each cell's and the mean's 95% interval, and two models compared on the same
corrupted images, cell by cell and on the mean.

Every cell of a corruption benchmark is the same test images, corrupted; so the images are resampled *jointly*
across cells (one draw of images serves every cell), which keeps the cells' correlation in the mean's interval.
Several seeds of a model are resampled too (seeds, then images: `lit_vir.analysis.uncertainty`). Two models are
paired image by image and seed by seed: per cell, McNemar's exact test for one seed each (a paired bootstrap with
several); for the mean over the benchmark cells, the paired bootstrap of its difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lit_vir.analysis.uncertainty import (
    LEVEL,
    Interval,
    PairedDifference,
    mcnemar_exact,
    percentile,
    resampled_means,
    sign_flip_p,
)
from lit_vir.data.corrupted import CLEAN
from lit_vir.data.corruptions import BENCHMARK_CORRUPTIONS

__all__ = ["CellIntervals", "PairedCells", "cell_outcomes", "corruption_intervals", "paired_corruptions"]

Cell = tuple[str, int]


def cell_outcomes(
    predictions: dict[str, np.ndarray], prefix: str = "test"
) -> tuple[list[Cell], np.ndarray, np.ndarray]:
    """The cells of a corruption test run's `test_predictions.npz` arrays (`<prefix>/<corruption>/s<k>/...`), with
    each cell's per-image outcomes (cells, N) and labels (cells, N), in the file's cell order."""
    cells: list[Cell] = []
    for key in predictions:
        parts = key.split("/")
        if len(parts) == 4 and parts[0] == prefix and parts[3] == "label" and parts[2].startswith("s"):
            cells.append((parts[1], int(parts[2][1:])))
    if not cells:
        raise ValueError(f"no corruption cells under {prefix}/ in these predictions (not a corruption test run?)")
    labels = np.stack([predictions[f"{prefix}/{name}/s{severity}/label"] for name, severity in cells])
    predicted = np.stack([predictions[f"{prefix}/{name}/s{severity}/prediction"] for name, severity in cells])
    return cells, (labels == predicted).astype(np.int8), labels


def benchmark_weights(cells: list[Cell]) -> np.ndarray:
    """Equal weights on the benchmark corruptions' cells (the mean corruption accuracy), none on clean and extras."""
    return np.array([1.0 if name in BENCHMARK_CORRUPTIONS and name != CLEAN else 0.0 for name, _ in cells])


@dataclass(frozen=True)
class CellIntervals:
    cells: list[Cell]
    accuracy: np.ndarray  # (cells,)
    low: np.ndarray
    high: np.ndarray
    per_corruption: dict[str, Interval]  # over its severities
    mean: Interval | None  # over the benchmark cells
    over: str


def corruption_intervals(
    cells: list[Cell], outcomes: list[np.ndarray], level: float = LEVEL, resamples: int = 2_000
) -> CellIntervals:
    """Intervals of every cell, of each corruption's mean over its severities and of the mean over the benchmark
    cells, from one (cells, N) outcome matrix per seed."""
    weights = benchmark_weights(cells)
    rows, means = resampled_means(outcomes, weights if weights.any() else np.ones(len(cells)), resamples)
    accuracy = np.mean([matrix.mean(axis=1) for matrix in outcomes], axis=0)
    tail = (1 - level) / 2
    low, high = np.quantile(rows, tail, axis=0), np.quantile(rows, 1 - tail, axis=0)
    over = "images" if len(outcomes) == 1 else "seeds × images"
    per_corruption = {}
    for name in dict.fromkeys(name for name, _ in cells):
        columns = [index for index, (other, _) in enumerate(cells) if other == name]
        resampled = rows[:, columns].mean(axis=1)
        per_corruption[name] = Interval(float(accuracy[columns].mean()), *percentile(resampled, level), over)
    mean = None
    if weights.any():
        mean = Interval(float(accuracy @ weights / weights.sum()), *percentile(means, level), over)
    return CellIntervals(cells, accuracy, low, high, per_corruption, mean, over)


@dataclass(frozen=True)
class PairedCells:
    """A − B per cell (difference, interval, p) and on the mean over the benchmark cells."""

    cells: list[Cell]
    difference: np.ndarray
    low: np.ndarray
    high: np.ndarray
    p: np.ndarray
    test: str
    mean: PairedDifference | None


def paired_corruptions(
    cells: list[Cell], a: list[np.ndarray], b: list[np.ndarray], level: float = LEVEL, resamples: int = 2_000
) -> PairedCells:
    """Two models' outcomes on the same corrupted images (one (cells, N) matrix per seed each, paired by seed)."""
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b, strict=True)):
        raise ValueError("paired_corruptions: the two models need the same seeds, cells and test images")
    deltas = [x.astype(np.int8) - y.astype(np.int8) for x, y in zip(a, b, strict=True)]  # (cells, N) in {−1, 0, 1}
    weights = benchmark_weights(cells)
    rows, means = resampled_means(deltas, weights if weights.any() else np.ones(len(cells)), resamples)
    difference = np.mean([delta.mean(axis=1) for delta in deltas], axis=0)
    tail = (1 - level) / 2
    low, high = np.quantile(rows, tail, axis=0), np.quantile(rows, 1 - tail, axis=0)
    if len(a) == 1:
        p = np.array([mcnemar_exact(int(np.sum(row == 1)), int(np.sum(row == -1))) for row in deltas[0]])
        test = "McNemar exact"
    else:
        p = np.minimum(1.0, 2 * np.minimum((rows <= 0).mean(axis=0), (rows >= 0).mean(axis=0)))
        test = "paired bootstrap (seeds × images)"
    mean = None
    if weights.any():
        value = float(difference @ weights / weights.sum())
        mean_p = float(min(1.0, 2 * min(np.mean(means <= 0), np.mean(means >= 0))))
        per_seed = [float(delta.mean(axis=1) @ weights / weights.sum()) for delta in deltas]
        mean = PairedDifference(
            value,
            *percentile(means, level),
            mean_p,
            "paired bootstrap (images)" if len(a) == 1 else "paired bootstrap (seeds × images)",
            len(a),
            sign_flip_p(per_seed) if len(a) > 1 else None,
        )
    return PairedCells(cells, difference, low, high, p, test, mean)
