"""What one run folder says about itself, read back for `lit-vir compare`.

A run folder (`logs/<name>/version_N`, or a sweep's `runs/<cell>/t<NNN>-s<seed>`) holds what `lit-vir fit` wrote:
the resolved `config.yaml`, `environment.yaml` (versions, machine, threads and CPU affinity), the logged scalars —
TensorBoard events, or Lightning's `CSVLogger` `metrics.csv` — and `test_predictions.npz` (every test image's label
and prediction). A folder that cannot be read is returned as a `Skipped` with the reason, never silently dropped.
"""

from __future__ import annotations

import csv
import glob
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_vir.training.callbacks.test_predictions import read_predictions
from lit_vir.training.labels import budget_label, model_label, precision_label, recipe_label

__all__ = ["Run", "Skipped", "find_runs", "read_run", "read_runs", "scalars"]

TAGS = (
    "val/acc",
    "test/acc",
    "test_last/acc",
    "params/trainable",
    "params/fixed",
    "perf/peak_memory_mib",
    "perf/epoch_time_s",
    "perf/fit_time_s",
    "perf/train_flops_per_image",
    "perf/train_flops_total",
    "perf/images_seen",
    "perf/optimizer_steps",
    "perf/epochs_completed",
)


@dataclass
class Run:
    """One run (None where it was not logged). `predictions` are its test images' outcomes (see `correct`)."""

    path: str
    model: str
    recipe: str
    dataset: str
    seed: int | None
    epochs: int  # validations, one per epoch begun
    budget: str
    precision: str
    val_acc_final: float | None
    val_acc_best: float | None
    test_acc: float | None
    test_last_acc: float | None
    test_images: int | None
    trainable_params: int | None
    fixed_params: int | None
    peak_memory_mib: float | None
    epoch_time_s: float | None
    fit_time_s: float | None
    train_flops_per_image: float | None
    train_flops: float | None
    images_seen: int | None
    epochs_completed: float | None
    optimizer_steps: int | None
    threads: int | None
    cpu_affinity: str
    device: str
    logger: str
    predictions: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def length(self) -> str:
        """What bounds the run: its time budget, else its epochs."""
        return self.budget or f"{self.epochs} epochs"

    def correct(self, prefix: str = "test") -> np.ndarray | None:
        """Each test image's outcome (1 right, 0 wrong) under `prefix` (`test`: the best-validation checkpoint),
        in the test set's order; None if the run kept no predictions."""
        labels, predicted = self.predictions.get(f"{prefix}/label"), self.predictions.get(f"{prefix}/prediction")
        if labels is None or predicted is None:
            return None
        return (labels == predicted).astype(np.int8)

    def labels(self, prefix: str = "test") -> np.ndarray | None:
        return self.predictions.get(f"{prefix}/label")


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def scalars(folder: Path) -> tuple[dict[str, list[float]], str] | None:
    """The run's logged scalars, tag → values in logging order, and which logger wrote them: TensorBoard events,
    else a CSVLogger's metrics.csv; None if it has neither."""
    if list(folder.glob("events.out.tfevents.*")):
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        events.Reload()
        present = set(events.Tags()["scalars"])
        return {tag: [event.value for event in events.Scalars(tag)] for tag in present}, "tensorboard"
    table = folder / "metrics.csv"
    if table.is_file():
        series: dict[str, list[float]] = {}
        with open(table, newline="") as stream:
            for row in csv.DictReader(stream):
                for tag, value in row.items():
                    if tag not in ("step", "epoch") and value not in ("", None):
                        series.setdefault(tag, []).append(float(value))
        return series, "csv"
    return None


def read_run(folder: Path) -> Run | Skipped:
    config_file = folder / "config.yaml"
    if not config_file.is_file():
        return Skipped(str(folder), "no config.yaml (not a folder written by lit-vir fit)")
    config = yaml.safe_load(config_file.read_text())
    environment_file = folder / "environment.yaml"
    environment = yaml.safe_load(environment_file.read_text()) if environment_file.exists() else {}
    found = scalars(folder)
    if found is None:
        return Skipped(str(folder), "no TensorBoard events and no metrics.csv (its logger was off)")
    series, logger = found
    if not series.get("val/acc"):
        return Skipped(str(folder), "no val/acc logged: it never validated (a test-only run, or stopped before)")
    last = lambda tag: series[tag][-1] if series.get(tag) else None  # noqa: E731
    seed = config.get("seed_everything")
    threads = environment.get("threads") or {}
    predictions = read_predictions(folder)
    test_labels = predictions.get("test/label")
    return Run(
        path=str(folder),
        model=model_label(config),
        recipe=recipe_label(config),
        dataset=config["data"]["class_path"].rsplit(".", 1)[-1].removesuffix("DataModule"),
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        epochs=len(series["val/acc"]),
        budget=budget_label(config),
        precision=precision_label(config),
        val_acc_final=last("val/acc"),
        val_acc_best=max(series["val/acc"]),
        test_acc=last("test/acc"),
        test_last_acc=last("test_last/acc"),
        test_images=None if test_labels is None else len(test_labels),
        trainable_params=integer(last("params/trainable")),
        fixed_params=integer(last("params/fixed")),
        peak_memory_mib=max(series["perf/peak_memory_mib"]) if series.get("perf/peak_memory_mib") else None,
        epoch_time_s=statistics.median(series["perf/epoch_time_s"]) if series.get("perf/epoch_time_s") else None,
        fit_time_s=last("perf/fit_time_s"),
        train_flops_per_image=last("perf/train_flops_per_image"),
        train_flops=last("perf/train_flops_total"),
        images_seen=integer(last("perf/images_seen")),
        epochs_completed=last("perf/epochs_completed"),
        optimizer_steps=integer(last("perf/optimizer_steps")),
        threads=threads.get("torch_threads"),
        cpu_affinity=",".join(map(str, threads.get("cpu_affinity") or [])),
        device=environment.get("cuda_device") or environment.get("cpu") or "unknown",
        logger=logger,
        predictions=predictions,
    )


def integer(value: float | None) -> int | None:
    return None if value is None or math.isnan(value) else int(value)


def find_runs(patterns: list[str]) -> list[Path]:
    """Folders matching the given paths or glob patterns that look like runs (a config.yaml, or logged scalars)."""
    found = {Path(path) for pattern in patterns for path in glob.glob(pattern, recursive=True)}
    runs = sorted(
        path
        for path in found
        if path.is_dir()
        and ((path / "config.yaml").is_file() or (path / "metrics.csv").is_file() or any(path.glob("events.out.*")))
    )
    if not runs:
        raise SystemExit(f"lit-vir compare: no run folder (with config.yaml) matches {' '.join(patterns)}")
    return runs


def read_runs(patterns: list[str]) -> tuple[list[Run], list[Skipped]]:
    read = [read_run(folder) for folder in find_runs(patterns)]
    return [run for run in read if isinstance(run, Run)], [run for run in read if isinstance(run, Skipped)]
