"""`lit-vir compare --corruptions`'s table (`lit_vir.commands.robustness_table`), in process on corruption test run
folders written here by hand: every line of robustness.md and every row of robustness.csv against the intervals of
`lit_vir.robustness.intervals` (tested on its own against hand computations), and each folder it must skip."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

from lit_vir.analysis.uncertainty import p_text
from lit_vir.commands.robustness_table import read_corruption_run, robustness_table
from lit_vir.robustness.intervals import corruption_intervals, paired_corruptions
from tests.fakedata import saved_config

BACKBONES = {  # model label → the backbone of its saved config.yaml, and whether its recipe averages weights (EMA)
    "ViR-1": ({"class_path": "lit_vir.models.ViR", "init_args": {"depth": 1}}, False),
    "ViR-1 no_reservoir": (
        {"class_path": "lit_vir.models.ViR", "init_args": {"depth": 1, "use_reservoir": False}},
        False,
    ),
    "ViT-Small-9 (from-scratch)": (
        {"class_path": "lit_vir.models.VisionTransformer", "init_args": {"depth": 9, "embed_dim": 192}},
        True,
    ),
}


def resolved_config(model: str, seed: int) -> dict:
    """A `lit-vir test` run's config on the corrupted test set."""
    backbone, averaged = BACKBONES[model]
    callbacks = [{"class_path": "lit_vir.training.callbacks.ExponentialMovingAverage"}] if averaged else []
    return saved_config(backbone, seed, "CorruptedDataModule", {"callbacks": callbacks})


CELLS = [("clean", 0), ("gaussian_noise", 1), ("gaussian_noise", 2), ("fog", 1)]
LABELS = np.arange(40) % 10


def outcomes_of(rights: list[int]) -> np.ndarray:
    """(cells, 40): the first `right` images of each cell right."""
    return np.stack([(np.arange(40) < right).astype(np.int8) for right in rights])


def write_run(root: Path, model: str, seed: int, rights: list[int], cells=CELLS, labels=LABELS) -> Path:
    folder = root / f"{model.split()[-1].strip('()')}-s{seed}"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(resolved_config(model, seed)))
    arrays = {}
    for (name, severity), right in zip(cells, rights, strict=True):
        predicted = np.where(np.arange(40) < right, labels, (labels + 1) % 10)
        arrays[f"test/{name}/s{severity}/label"] = labels.astype(np.int16)
        arrays[f"test/{name}/s{severity}/prediction"] = predicted.astype(np.int16)
    np.savez_compressed(folder / "test_predictions.npz", **arrays)
    return folder


RIGHTS = {  # model → seed → right images per cell (clean, noise s1, noise s2, fog s1)
    "ViR-1": {1: [36, 30, 24, 28], 2: [35, 31, 22, 27]},
    "ViR-1 no_reservoir": {1: [37, 29, 20, 30], 2: [38, 28, 21, 31]},
}


def text(estimate: float, low: float, high: float) -> str:
    return f"{100 * estimate:.2f} [{100 * low:.2f}, {100 * high:.2f}]"


def test_the_table_and_csv_hold_each_models_intervals_and_the_paired_differences(tmp_path):
    folders = [
        write_run(tmp_path / "runs", model, seed, rights)
        for model, seeds in RIGHTS.items()
        for seed, rights in seeds.items()
    ]
    folders.append(write_run(tmp_path / "runs", "ViT-Small-9 (from-scratch)", 3, [20, 10, 8, 12]))
    skipped = robustness_table(folders, tmp_path / "out", "ViR-1", "tiny")
    assert skipped == []
    vir = corruption_intervals(CELLS, [outcomes_of(rights) for rights in RIGHTS["ViR-1"].values()])
    ablation = corruption_intervals(CELLS, [outcomes_of(rights) for rights in RIGHTS["ViR-1 no_reservoir"].values()])
    vit = corruption_intervals(CELLS, [outcomes_of([20, 10, 8, 12])])
    paired = paired_corruptions(
        CELLS,
        [outcomes_of(rights) for rights in RIGHTS["ViR-1 no_reservoir"].values()],
        [outcomes_of(rights) for rights in RIGHTS["ViR-1"].values()],
    )
    mean = paired.mean
    lines = (tmp_path / "out" / "robustness.md").read_text().splitlines()
    assert lines[:6] == [
        "# tiny",
        "",
        "40 test images per cell; 95% intervals: bootstrap over seeds, then images (resampled jointly across cells). "
        "Δ: against the baseline, paired by seed and image.",
        "",
        "| model | seeds | clean % [CI] | mean corruption accuracy % [CI] | Δ mean vs ViR-1, points [CI] | p |",
        "|---|---|---|---|---|---|",
    ]
    assert lines[6:9] == [
        f"| ViR-1 | 1, 2 | {text(vir.accuracy[0], vir.low[0], vir.high[0])} | "
        f"{text(vir.mean.estimate, vir.mean.low, vir.mean.high)} | (baseline) |  |",
        f"| ViR-1 no_reservoir | 1, 2 | {text(ablation.accuracy[0], ablation.low[0], ablation.high[0])} | "
        f"{text(ablation.mean.estimate, ablation.mean.low, ablation.mean.high)} | "
        f"{100 * mean.difference:+.2f} [{100 * mean.low:+.2f}, {100 * mean.high:+.2f}] | {p_text(mean.p)} |",
        f"| ViT-Small-9 (from-scratch) | 3 | {text(vit.accuracy[0], vit.low[0], vit.high[0])} | "
        f"{text(vit.mean.estimate, vit.mean.low, vit.mean.high)} | not paired: no seed in common |  |",
    ]
    per = lambda found, name: text(*(getattr(found.per_corruption[name], key) for key in ("estimate", "low", "high")))  # noqa: E731
    assert lines[9:] == [
        "",
        "Per corruption (mean over its severities), % [95% CI]:",
        "",
        "| corruption | ViR-1 | ViR-1 no_reservoir | ViT-Small-9 (from-scratch) |",
        "|---|---|---|---|",
        *(
            f"| {name} | {per(vir, name)} | {per(ablation, name)} | {per(vit, name)} |"
            for name in ("gaussian_noise", "fog")
        ),
    ]
    assert vir.accuracy[1] == pytest.approx((30 + 31) / 80)  # the interval module's estimate is the plain mean

    with open(tmp_path / "out" / "robustness.csv", newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == [
        "model", "seeds", "corruption", "severity", "accuracy", "low", "high",
        "difference", "difference_low", "difference_high", "p",
    ]  # fmt: skip
    by_model = {}
    for row in rows[1:]:
        by_model.setdefault(row[0], []).append(row)
    assert [len(found) for found in by_model.values()] == [5, 5, 5]  # 4 cells and the mean, for each model
    for index, (name, severity) in enumerate(CELLS):
        row = by_model["ViR-1 no_reservoir"][index]
        assert row[:4] == ["ViR-1 no_reservoir", "2", name, str(severity)]
        found = [float(value) for value in row[4:]]
        expected = [ablation.accuracy[index], ablation.low[index], ablation.high[index]]
        expected += [paired.difference[index], paired.low[index], paired.high[index], paired.p[index]]
        assert found == pytest.approx(expected, abs=1e-12)
        assert len(by_model["ViR-1"][index]) == 7  # the baseline: no difference columns
    assert by_model["ViR-1 no_reservoir"][4][:4] == ["ViR-1 no_reservoir", "2", "mean (benchmark cells)", ""]
    expected = [ablation.mean.estimate, ablation.mean.low, ablation.mean.high]
    expected += [mean.difference, mean.low, mean.high, mean.p]
    assert [float(value) for value in by_model["ViR-1 no_reservoir"][4][4:]] == pytest.approx(expected, abs=1e-12)
    assert len(by_model["ViT-Small-9 (from-scratch)"][4]) == 7  # not paired: no difference columns


def test_runs_it_cannot_use_are_skipped_with_the_reason(tmp_path):
    first = write_run(tmp_path / "a", "ViR-1", 1, [36, 30, 24, 28])
    other_cells = write_run(tmp_path / "b", "ViR-1", 2, [36, 30, 24], cells=CELLS[:3])
    other_images = write_run(tmp_path / "c", "ViR-1", 3, [36, 30, 24, 28], labels=LABELS[::-1].copy())
    no_config = tmp_path / "d"
    no_config.mkdir()
    no_predictions = write_run(tmp_path / "e", "ViR-1", 4, [36, 30, 24, 28])
    (no_predictions / "test_predictions.npz").unlink()
    clean_only = write_run(tmp_path / "f", "ViR-1", 5, [36], cells=CELLS[:1])
    np.savez_compressed(clean_only / "test_predictions.npz", **{"test/label": LABELS, "test/prediction": LABELS})
    assert read_corruption_run(no_config) == "no config.yaml"
    assert read_corruption_run(no_predictions) == "no test_predictions.npz"
    assert read_corruption_run(clean_only).startswith("no corruption cells under test/")
    folders = [first, other_cells, other_images, no_config, no_predictions, clean_only]
    skipped = robustness_table(folders, tmp_path / "out", None, "t")
    assert skipped == [
        f"{no_config}: no config.yaml",
        f"{no_predictions}: no test_predictions.npz",
        f"{clean_only}: no corruption cells under test/ in these predictions (not a corruption test run?)",
        f"{other_cells}: not the same corrupted images as {first}",
        f"{other_images}: not the same corrupted images as {first}",
    ]
    table = (tmp_path / "out" / "robustness.md").read_text()
    assert "| model | seeds | clean % [CI] | mean corruption accuracy % [CI] |\n" in table  # no baseline columns
    assert table.endswith("|\n\nSkipped: " + "; ".join(skipped) + "\n")  # after an empty line
    assert read_corruption_run(first).seed == 1 and read_corruption_run(first).model == "ViR-1"


def test_a_table_without_clean_or_benchmark_cells_shows_dashes(tmp_path):
    extras = [("speckle_noise", 1)]  # an extra corruption: not one of the benchmark's
    folder = write_run(tmp_path, "ViR-1", 1, [30], cells=extras)
    robustness_table([folder], tmp_path / "out", None, "t")
    row = next(line for line in (tmp_path / "out" / "robustness.md").read_text().splitlines() if "| ViR-1 |" in line)
    assert row == "| ViR-1 | 1 | – | – |"
    with open(tmp_path / "out" / "robustness.csv", newline="") as stream:
        assert len(list(csv.reader(stream))) == 2  # the header and the one cell: no mean row


def test_a_baseline_or_runs_it_cannot_find_stop_with_what_there_is(tmp_path):
    folders = [write_run(tmp_path, "ViR-1", 1, [36, 30, 24, 28]), write_run(tmp_path, "ViR-1 no_reservoir", 1, [1] * 4)]
    message = r"^lit-vir compare: --baseline 'ViT' is none of the models: ViR-1, ViR-1 no_reservoir$"
    with pytest.raises(SystemExit, match=message):
        robustness_table(folders, tmp_path / "out", "ViT", "t")
    empty, bare = tmp_path / "empty", tmp_path / "bare"
    empty.mkdir()
    (bare / "config.yaml").parent.mkdir()
    (bare / "config.yaml").write_text("{}")
    with pytest.raises(SystemExit) as stop:
        robustness_table([empty, bare], tmp_path / "out", None, "t")
    assert str(stop.value) == (
        "lit-vir compare --corruptions: none of these is a corruption test run:\n"
        f"{empty}: no config.yaml\n{bare}: no test_predictions.npz"
    )


def test_the_output_folder_is_made_with_its_parents_and_may_exist_already(tmp_path):
    folder = write_run(tmp_path / "runs", "ViR-1", 1, [36, 30, 24, 28])
    output = tmp_path / "a" / "b" / "robustness"
    robustness_table([folder], output, None, "t")
    robustness_table([folder], output, None, "t")  # written again into the same folder
    assert sorted(path.name for path in output.iterdir()) == ["robustness.csv", "robustness.md"]


@pytest.mark.parametrize(("seed", "expected"), [(3, 3), (True, None), ("3", None), (None, None)])
def test_only_an_integer_seed_is_a_seed(tmp_path, seed, expected):
    folder = write_run(tmp_path, "ViR-1", 1, [36, 30, 24, 28])
    config = yaml.safe_load((folder / "config.yaml").read_text())
    (folder / "config.yaml").write_text(yaml.safe_dump(config | {"seed_everything": seed}))
    assert read_corruption_run(folder).seed == expected
