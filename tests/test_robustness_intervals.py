"""The corruption report's intervals and paired comparison (lit_vir.robustness.intervals), against a second method
(resampling image indices by hand) and scipy, then through the real `lit-vir test` on corrupted digits."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest
from scipy import stats

from lit_vir.analysis.uncertainty import accuracy_interval, resampled_means
from lit_vir.cli import main
from lit_vir.data.corruptions import BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS
from lit_vir.robustness.intervals import (
    benchmark_weights,
    cell_outcomes,
    corruption_intervals,
    paired_corruptions,
)
from lit_vir.training.callbacks.test_predictions import read_predictions
from tests.conftest import CONFIGS, QUICK_TRAINER

CELLS = [("clean", 0), *[(name, severity) for name in BENCHMARK_CORRUPTIONS[:3] for severity in (1, 5)]]


def outcomes(accuracies: list[float], size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((len(accuracies), size)) < np.array(accuracies)[:, None]).astype(np.int8)


def test_a_cell_interval_is_the_one_run_bootstrap_over_its_images():
    matrix = outcomes([0.9, 0.8, 0.6, 0.85, 0.7, 0.75, 0.5], 2000)
    intervals = corruption_intervals(CELLS, [matrix], resamples=4000)
    for index in range(len(CELLS)):
        alone = accuracy_interval([matrix[index]])
        assert intervals.accuracy[index] == matrix[index].mean()
        assert (intervals.low[index], intervals.high[index]) == pytest.approx((alone.low, alone.high), abs=0.004)


def test_the_mean_resamples_the_images_jointly_across_cells():
    """Corrupted copies of the same images: the mean's interval must resample one set of images for all cells.
    Checked against resampling indices by hand; identical cells give the one cell's width, independent ones less."""
    base = outcomes([0.8], 1500, seed=1)[0]
    correlated = np.stack([base] * len(CELLS))
    joint = corruption_intervals(CELLS, [correlated], resamples=4000).mean
    rng = np.random.default_rng(5)
    benchmark = [index for index, (name, _) in enumerate(CELLS) if name != "clean"]
    means = [correlated[benchmark][:, rng.integers(1500, size=1500)].mean() for _ in range(3000)]
    assert (joint.low, joint.high) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])), abs=0.004)
    one = accuracy_interval([base])
    assert joint.high - joint.low == pytest.approx(one.high - one.low, abs=0.006)
    independent = corruption_intervals(CELLS, [outcomes([0.8] * len(CELLS), 1500, seed=2)]).mean
    assert independent.high - independent.low < 0.6 * (joint.high - joint.low)  # √6 narrower in theory


def test_paired_cells_give_mcnemar_per_cell_and_zero_against_themselves():
    a = outcomes([0.9, 0.8, 0.6, 0.85, 0.7, 0.75, 0.5], 1000, seed=3)
    b = outcomes([0.9, 0.75, 0.6, 0.8, 0.7, 0.7, 0.55], 1000, seed=4)
    paired = paired_corruptions(CELLS, [a], [b])
    for index in range(len(CELLS)):
        only_a = int(np.sum((a[index] == 1) & (b[index] == 0)))
        only_b = int(np.sum((a[index] == 0) & (b[index] == 1)))
        assert paired.difference[index] == pytest.approx((only_a - only_b) / 1000)
        expected = stats.binomtest(min(only_a, only_b), only_a + only_b).pvalue
        assert paired.p[index] == pytest.approx(min(1.0, expected), rel=1e-9)
    benchmark = [index for index, (name, _) in enumerate(CELLS) if name != "clean"]
    assert paired.mean.difference == pytest.approx(a[benchmark].mean() - b[benchmark].mean())
    itself = paired_corruptions(CELLS, [a], [a])
    assert not itself.difference.any() and (itself.p == 1).all() and itself.mean.p == 1.0
    assert (itself.mean.low, itself.mean.high) == (0.0, 0.0)


def test_lit_vir_test_reports_intervals_and_pairs_two_checkpoints(tmp_path, monkeypatch, capsys, wide_console):
    """Two checkpoints of a digits ViR tested on the same corrupted images; the second report pairs with the
    first run. The prediction files hold every cell, equal to the report's accuracies; the paired file's
    differences equal the two runs' accuracies subtracted."""
    monkeypatch.chdir(tmp_path)
    small = ["--model.backbone.init_args.num_nodes", "60", "--model.backbone.init_args.jump_size", "7"]
    ablations = {1: [], 2: ["-c", str(CONFIGS / "ablation/no_reservoir.yaml")]}  # two models: ViR-1, no_reservoir
    for _seed, ablation in ablations.items():
        main(
            [
                "fit",
                "-c",
                str(CONFIGS / "quickstart.yaml"),
                *ablation,
                *QUICK_TRAINER,
                *small,
                "--seed_everything",
                "1",
                "--test_after_fit",
                "false",
            ]
        )
    checkpoints = [tmp_path / f"logs/vir-digits/version_{index}/checkpoints/last.ckpt" for index in (0, 1)]
    corrupted = ["-c", str(CONFIGS / "quickstart.yaml"), "-c", str(CONFIGS / "data/corrupted_digits.yaml"), *small]
    corrupted += ["--data.init_args.corruptions", "[gaussian_noise, fog]", "--data.init_args.severities", "[1, 5]"]
    corrupted += ["--trainer.enable_progress_bar", "false"]
    main(["test", *corrupted, "--ckpt_path", str(checkpoints[0])])  # ViR-1
    first = tmp_path / "logs/vir-corrupted/version_0"
    callback = ["--trainer.callbacks+=lit_vir.training.callbacks.corruption_report.CorruptionReport"]
    callback += ["--trainer.callbacks.init_args.paired_with", str(first)]
    capsys.readouterr()
    no_reservoir = ["-c", str(CONFIGS / "ablation/no_reservoir.yaml")]
    main(["test", *corrupted, *no_reservoir, "--ckpt_path", str(checkpoints[-1]), *callback])
    shown = " ".join(capsys.readouterr().out.split())  # Rich wraps a caption at its table's width
    second = tmp_path / "logs/vir-corrupted/version_1"
    assert "Paired with" in shown and "95% intervals, bootstrap over images: 359 test images" in shown

    for run in (first, second):
        cells, matrix, _ = cell_outcomes(read_predictions(run))
        # the files hold the intervals of the run's own per-image outcomes: corruption_intervals, checked against
        # resampling by hand above, on the prediction file (not only intervals that contain the accuracy)
        intervals = corruption_intervals(cells, [matrix])
        with open(run / "corruption_accuracy.csv") as stream:
            rows = {(row["corruption"], int(row["severity"])): row for row in csv.DictReader(stream)}
        for index, (cell, values) in enumerate(zip(cells, matrix, strict=True)):
            if cell[0] != "clean":
                row = rows[cell]
                assert float(row["accuracy"]) == pytest.approx(values.mean())
                shown = (float(row["accuracy_low"]), float(row["accuracy_high"]))
                assert shown == pytest.approx((intervals.low[index], intervals.high[index]), abs=1e-12)
                assert shown[0] < shown[1]
        summary = json.loads((run / "corruption_summary.json").read_text())
        assert summary["mean_corruption_accuracy"] == pytest.approx(intervals.mean.estimate)
        mean = intervals.mean
        assert summary["mean_corruption_interval"] == pytest.approx([mean.low, mean.high], abs=1e-12)
        assert summary["test_images"] == 359

    ours, theirs = cell_outcomes(read_predictions(second))[1], cell_outcomes(read_predictions(first))[1]
    with open(second / "corruption_paired.csv") as stream:
        paired = list(csv.DictReader(stream))
    cells = cell_outcomes(read_predictions(second))[0]
    for row, cell, a, b in zip(paired, cells, ours, theirs, strict=False):
        assert (row["corruption"], int(row["severity"])) == cell
        assert float(row["difference"]) == pytest.approx(a.mean() - b.mean())
    assert any(float(row["difference"]) != 0 for row in paired[:-1])  # two different models
    assert paired[-1]["corruption"] == "mean (benchmark cells)"

    # the two runs as one table: each model's mean corruption accuracy, and the paired difference of the means
    main(["compare", "logs/vir-corrupted/*", "--corruptions", "--baseline", "ViR-1", "--output", "robustness"])
    table = (tmp_path / "robustness" / "robustness.md").read_text()
    benchmark = [index for index, (name, _) in enumerate(cells) if name != "clean"]
    row = next(line for line in table.splitlines() if line.startswith("| ViR-1 no_reservoir | 42 |"))
    expected = 100 * (ours[benchmark].mean() - theirs[benchmark].mean())
    assert row.split("|")[5].strip().startswith(f"{expected:+.2f} [")
    assert f"| ViR-1 | 42 | {100 * theirs[0].mean():.2f} [" in table  # clean accuracy, cell 0


def test_several_seeds_are_paired_seed_by_seed_across_cells():
    a = [outcomes([0.9, 0.8, 0.6, 0.85, 0.7, 0.75, 0.5], 800, seed=s) for s in (5, 6)]
    b = [outcomes([0.9, 0.75, 0.6, 0.8, 0.7, 0.7, 0.55], 800, seed=s) for s in (7, 8)]
    paired = paired_corruptions(CELLS, a, b)
    assert paired.test == "paired bootstrap (seeds × images)" and paired.mean.seeds == 2
    per_seed = [x.mean(axis=1) - y.mean(axis=1) for x, y in zip(a, b, strict=True)]
    assert paired.difference == pytest.approx(np.mean(per_seed, axis=0))
    benchmark = [index for index, (name, _) in enumerate(CELLS) if name != "clean"]
    assert paired.mean.difference == pytest.approx(np.mean([d[benchmark].mean() for d in per_seed]))
    assert paired.mean.sign_flip_p is not None


def test_cell_outcomes_reads_the_cells_of_one_prefix_in_file_order():
    """A hand-made predictions file: two prefixes, keys that are not cells, cells in a non-sorted order."""
    label = np.array([0, 1, 2, 3])
    files = {
        "test/label": label,  # the clean test of an ordinary run: not a cell (2 parts)
        "test/fog/s5/label": label,
        "test/fog/s5/prediction": np.array([0, 1, 0, 0]),
        "test/fog/s5/probability": np.full(4, 0.5),
        "test/clean/s0/label": label,
        "test/clean/s0/prediction": np.array([0, 1, 2, 0]),
        "test/fog/x1/label": label,  # not a severity
        "test_last/fog/s1/label": label,
        "test_last/fog/s1/prediction": np.array([3, 2, 1, 0]),
    }
    cells, matrix, labels = cell_outcomes(files)
    assert cells == [("fog", 5), ("clean", 0)]
    assert matrix.tolist() == [[1, 1, 0, 0], [1, 1, 1, 0]] and matrix.dtype == np.int8
    assert labels.tolist() == [label.tolist()] * 2
    cells, matrix, _ = cell_outcomes(files, prefix="test_last")
    assert cells == [("fog", 1)] and matrix.tolist() == [[0, 0, 0, 0]]
    with pytest.raises(ValueError, match=r"no corruption cells under val/ in these predictions"):
        cell_outcomes(files, prefix="val")


def test_the_mean_weighs_only_the_benchmark_cells_equally():
    """Clean and the extra corruptions are reported but left out of the mean corruption accuracy."""
    extra = EXTRA_CORRUPTIONS[0]
    cells = [("clean", 0), (BENCHMARK_CORRUPTIONS[0], 1), (extra, 1), (BENCHMARK_CORRUPTIONS[1], 3)]
    assert benchmark_weights(cells).tolist() == [0.0, 1.0, 0.0, 1.0]
    matrix = np.array([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]], dtype=np.int8)
    intervals = corruption_intervals(cells, [matrix], resamples=200)
    assert intervals.mean.estimate == pytest.approx((0.25 + 0.75) / 2)
    assert intervals.accuracy.tolist() == [1.0, 0.25, 0.0, 0.75]
    assert intervals.over == "images" and intervals.mean.over == "images"


def test_without_benchmark_cells_there_is_no_mean_but_every_cell_has_its_interval():
    cells = [("clean", 0), (EXTRA_CORRUPTIONS[0], 2)]
    matrix = outcomes([0.9, 0.6], 1500, seed=11)
    intervals = corruption_intervals(cells, [matrix], resamples=3000)
    assert intervals.mean is None
    for index in range(2):
        alone = accuracy_interval([matrix[index]])
        assert (intervals.low[index], intervals.high[index]) == pytest.approx((alone.low, alone.high), abs=0.005)
    paired = paired_corruptions(cells, [matrix], [outcomes([0.9, 0.5], 1500, seed=12)])
    assert paired.mean is None and paired.difference.shape == (2,)


def test_each_corruptions_interval_is_its_severities_resampled_together():
    """Per corruption: the mean over its severities, and the interval of that mean when the same images are drawn
    for every severity (checked by resampling indices by hand), at the 95% and at a 50% level."""
    matrix = outcomes([0.9, 0.8, 0.6, 0.85, 0.7, 0.75, 0.5], 1200, seed=13)
    rng = np.random.default_rng(9)
    draws = [rng.integers(1200, size=1200) for _ in range(4000)]
    for level in (0.95, 0.5):
        intervals = corruption_intervals(CELLS, [matrix], level=level, resamples=4000)
        for name in dict.fromkeys(name for name, _ in CELLS):
            rows = [index for index, (other, _) in enumerate(CELLS) if other == name]
            found = intervals.per_corruption[name]
            assert found.estimate == pytest.approx(matrix[rows].mean())
            by_hand = [matrix[rows][:, draw].mean() for draw in draws]
            tail = (1 - level) / 2
            assert (found.low, found.high) == pytest.approx(tuple(np.quantile(by_hand, [tail, 1 - tail])), abs=0.005)
            assert found.over == "images"
        low, high = np.quantile([matrix[1][draw].mean() for draw in draws], [(1 - level) / 2, (1 + level) / 2])
        assert (intervals.low[1], intervals.high[1]) == pytest.approx((low, high), abs=0.005)


def test_several_seeds_give_seed_level_p_values_and_the_exact_sign_flip_of_the_means():
    """Two seeds: a cell that A gets right and B wrong on every image has p = 0, an identical cell p = 1; the mean's
    sign-flip p is the exact one of the two per-seed differences (2 of the 4 sign assignments reach it: 0.5)."""
    a = [outcomes([0.9, 0.8, 0.6, 0.85, 0.7, 0.75, 0.5], 600, seed=s) for s in (21, 22)]
    b = [matrix.copy() for matrix in a]
    for x, y in zip(a, b, strict=True):
        x[1], y[1] = 1, 0  # cell 1: A always right, B always wrong
        y[3] = 1 - y[3]  # cell 3: B flips every outcome of A
    paired = paired_corruptions(CELLS, a, b, resamples=500)
    assert paired.test == "paired bootstrap (seeds × images)"
    assert paired.p[1] == 0.0 and paired.difference[1] == 1.0 and (paired.low[1], paired.high[1]) == (1.0, 1.0)
    assert paired.p[0] == 1.0 and paired.difference[0] == 0.0  # clean: identical
    per_seed = [float((x[1:] - y[1:].astype(int)).mean()) for x, y in zip(a, b, strict=True)]
    assert paired.mean.difference == pytest.approx(np.mean(per_seed))
    assert paired.mean.test == "paired bootstrap (seeds × images)" and paired.mean.seeds == 2
    assert paired.mean.sign_flip_p == (0.5 if per_seed[0] * per_seed[1] > 0 else 1.0)
    single = paired_corruptions(CELLS, a[:1], b[:1], resamples=500)
    assert single.test == "McNemar exact" and single.mean.test == "paired bootstrap (images)"
    assert single.mean.sign_flip_p is None and single.mean.seeds == 1


def test_paired_corruptions_refuses_runs_that_do_not_pair():
    a = outcomes([0.9] * len(CELLS), 100, seed=31)
    message = r"^paired_corruptions: the two models need the same seeds, cells and test images$"
    with pytest.raises(ValueError, match=message):
        paired_corruptions(CELLS, [a, a], [a])
    with pytest.raises(ValueError, match=message):
        paired_corruptions(CELLS, [a], [a[:, :50]])


def test_a_paired_cells_interval_is_its_differences_resampled_by_hand():
    """One seed each: per cell, the interval of A − B over the same images drawn for both, against resampling indices
    by hand; and the default is 2,000 resamples of the shared two-level bootstrap (tested in test_uncertainty.py)."""
    a = outcomes([0.9, 0.8, 0.6, 0.85, 0.7, 0.75, 0.5], 1200, seed=41)
    b = outcomes([0.85, 0.8, 0.65, 0.8, 0.7, 0.7, 0.55], 1200, seed=42)
    paired = paired_corruptions(CELLS, [a], [b], resamples=4000)
    rng = np.random.default_rng(3)
    delta = a.astype(int) - b.astype(int)
    draws = np.array([delta[:, rng.integers(1200, size=1200)].mean(axis=1) for _ in range(4000)])  # (R, cells)
    low, high = np.quantile(draws, [0.025, 0.975], axis=0)
    assert paired.low == pytest.approx(low, abs=0.005) and paired.high == pytest.approx(high, abs=0.005)
    default = paired_corruptions(CELLS, [a], [b])
    rows, _ = resampled_means([delta.astype(np.int8)], benchmark_weights(CELLS), 2_000)
    assert default.low == pytest.approx(np.quantile(rows, 0.025, axis=0), abs=1e-12)
    intervals = corruption_intervals(CELLS, [a])
    rows, means = resampled_means([a], benchmark_weights(CELLS), 2_000)
    assert intervals.high == pytest.approx(np.quantile(rows, 0.975, axis=0), abs=1e-12)
    # the mean over 6 cells lies on a finer grid than one cell's accuracy: one resample more or less would show there
    assert (intervals.mean.low, intervals.mean.high) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    _, paired_means = resampled_means([delta.astype(np.int8)], benchmark_weights(CELLS), 2_000)
    assert (default.mean.low, default.mean.high) == pytest.approx(tuple(np.quantile(paired_means, [0.025, 0.975])))


def test_no_benchmark_cells_compute_without_warnings():
    """The fallback weights (every cell) keep the unused mean finite: no division by a zero weight sum."""
    cells = [("clean", 0), (EXTRA_CORRUPTIONS[0], 2)]
    a, b = outcomes([0.9, 0.6], 300, seed=51), outcomes([0.8, 0.6], 300, seed=52)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        corruption_intervals(cells, [a], resamples=50)
        paired_corruptions(cells, [a], [b], resamples=50)


def test_the_mean_interval_and_its_p_leave_clean_out_and_several_seeds_say_so():
    """Clean right on every image while the benchmark cells are at about 50%: the mean's interval must sit around 50%
    (clean left out of its resampling, not only of its estimate); the two-seed p-values are twice the smaller tail of
    the shared two-level bootstrap (lit_vir.analysis.uncertainty.resampled_means, checked by hand there)."""
    seeds = [outcomes([1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], 500, seed=s) for s in (61, 62)]
    intervals = corruption_intervals(CELLS, seeds, resamples=1000)
    assert intervals.over == "seeds × images" and intervals.mean.over == "seeds × images"
    assert intervals.per_corruption["clean"].over == "seeds × images"
    assert intervals.mean.high < 0.6 and intervals.mean.low > 0.4
    others = [outcomes([0.0, 0.48, 0.5, 0.46, 0.5, 0.47, 0.5], 500, seed=s) for s in (63, 64)]
    paired = paired_corruptions(CELLS, seeds, others, resamples=1000)
    assert paired.mean.high < 0.2  # the clean cell's +1 left out of the mean's resampling
    deltas = [x.astype(np.int8) - y.astype(np.int8) for x, y in zip(seeds, others, strict=True)]
    rows, means = resampled_means(deltas, benchmark_weights(CELLS), 1000)
    tails = np.minimum((rows <= 0).mean(axis=0), (rows >= 0).mean(axis=0))
    assert paired.p.tolist() == np.minimum(1.0, 2 * tails).tolist()
    assert 0 < paired.p[1:].min() < 0.5  # an intermediate p, where a factor other than 2 would show
    assert paired.mean.p == min(1.0, 2 * min(np.mean(means <= 0), np.mean(means >= 0)))
    assert 0 < paired.mean.p < 0.5
