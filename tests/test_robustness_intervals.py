"""The corruption report's intervals and paired comparison (lit_vir.robustness.intervals), against a second method
(resampling image indices by hand) and scipy, then through the real `lit-vir test` on corrupted digits."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import stats

from lit_vir.analysis.uncertainty import accuracy_interval
from lit_vir.cli import main
from lit_vir.data.corruptions import BENCHMARK_CORRUPTIONS
from lit_vir.robustness.intervals import cell_outcomes, corruption_intervals, paired_corruptions
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
