"""The sweeps behind docs/results.md: each composes the shared protocol with its rows, every row runs at the learning
rate its tuning chose — read here from the committed tuning records, not from the specs — and every cell builds."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import yaml

from lit_vir.sweep.spec import read_spec
from lit_vir.sweep.validate import validate
from tests.conftest import CONFIGS, REPO

SWEEPS = CONFIGS / "sweep"
TUNING = REPO / "docs" / "measurements" / "results-fmnist" / "tuning"
LR = "model.init_args.optimizer.init_args.lr"


@functools.cache
def tuning_trials() -> dict[str, dict[float, float]]:
    """Each row's complete tuning trials: learning rate → best validation accuracy (trial.yaml of every run)."""
    found: dict[str, dict[float, float]] = {}
    for record in TUNING.glob("*/runs/*/*/trial.yaml"):
        trial = yaml.safe_load(record.read_text())
        if trial["state"] == "COMPLETE":
            found.setdefault(trial["cell"], {})[trial["params"]["lr"]] = trial["value"]
    return found


def tuned(row: str) -> float:
    trials = tuning_trials()[row]
    return max(trials, key=trials.__getitem__)


def test_every_row_was_tuned_on_the_same_rates_and_its_best_rate_is_inside_them():
    """Five half-decade rates for every row (issue #27: the same number of trials), and a best rate with a tried rate
    on either side (else the range is extended: fmnist_lr_low adds 1e-5 and 3e-5)."""
    trials = tuning_trials()
    assert len(trials) == 9
    for row, rates in trials.items():
        assert {1e-4, 3e-4, 1e-3, 3e-3, 1e-2} <= set(rates), row
        ordered = sorted(rates)
        assert 0 < ordered.index(tuned(row)) < len(ordered) - 1, (row, rates)


@pytest.mark.parametrize(
    ("rows_file", "rows"),
    [
        ("fmnist_table.yaml", ["vir1", "no_reservoir", "memoryless"]),
        (
            "fmnist_baselines.yaml",
            ["vit_small_reference", "vit_small_scratch", "resnet18", "linear", "mlp", "small_cnn"],
        ),
    ],
)
def test_a_results_table_runs_its_rows_at_their_tuned_rates_under_the_protocol(rows_file, rows, monkeypatch):
    monkeypatch.chdir(REPO)  # the specs name their pieces from the repository root
    spec = read_spec(SWEEPS / "fmnist_15min.yaml", SWEEPS / rows_file)
    assert spec.name == Path(rows_file).stem
    assert spec.base == ["configs/vir.yaml", "configs/data/fashion_mnist.yaml", "configs/recipe/budget.yaml"]
    assert spec.grid.seeds == [1, 2, 3] and spec.launcher.cores == [1] and spec.resources.threads == 1
    assert spec.overrides["trainer.max_time"] == "00:00:15:00" and spec.overrides["test_after_fit"] is True
    assert list(spec.grid.rows) == rows
    for name, row in spec.grid.rows.items():
        assert row.overrides[LR] == tuned(name), name
    assert [cell.name for cell in validate(spec)] == rows


@pytest.mark.parametrize("spec_file", ["fmnist_epochs.yaml", "gpu_fmnist.yaml"])
def test_the_equal_epoch_runs_use_the_tuned_rates_too(spec_file, monkeypatch):
    monkeypatch.chdir(REPO)
    spec = read_spec(SWEEPS / spec_file)
    assert spec.overrides["trainer.max_epochs"] == 10
    for name, row in spec.grid.rows.items():
        assert row.overrides[LR] == tuned(name), name


def test_the_vit_seed_trained_again_is_the_baselines_row_narrowed_to_seed_1(monkeypatch):
    """docs/results.md's robustness row tests a second run of ViT-Small's seed 1: its spec may change nothing but the
    name and the grid's rows and seeds."""
    monkeypatch.chdir(REPO)
    full = read_spec(SWEEPS / "fmnist_15min.yaml", SWEEPS / "fmnist_baselines.yaml")
    narrowed = read_spec(
        SWEEPS / "fmnist_15min.yaml", SWEEPS / "fmnist_baselines.yaml", SWEEPS / "fmnist_vit_reference_seed1.yaml"
    )
    assert narrowed.name == "fmnist_vit_reference_seed1" and narrowed.grid.seeds == [1]
    assert narrowed.grid.rows == {"vit_small_reference": full.grid.rows["vit_small_reference"]}
    assert (narrowed.base, narrowed.overrides, narrowed.resources) == (full.base, full.overrides, full.resources)
    assert [cell.name for cell in validate(narrowed)] == ["vit_small_reference"]
    record = REPO / "docs/measurements/results-fmnist/robustness/retrained/vit_small_reference/t000-s1/trial.yaml"
    trial = yaml.safe_load(record.read_text())
    assert (trial["sweep"], trial["cell"], trial["seed"], trial["state"]) == (narrowed.name, "vit_small_reference", 1,
                                                                              "COMPLETE")  # fmt: skip
