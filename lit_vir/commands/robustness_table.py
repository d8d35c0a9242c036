"""`lit-vir compare --corruptions`: corruption test runs of several models and seeds, as one table with intervals.

Each run folder is a `lit-vir test` on a corruption benchmark (its `test_predictions.npz` holds every cell's
per-image outcomes, its `config.yaml` the model and seed). Runs of the same model are its seeds: every cell's,
corruption's and the mean's 95% interval resamples seeds, then the test images jointly across cells; against
`--baseline`, the difference per corruption and of the mean, paired seed by seed and image by image
(`lit_vir.robustness.intervals`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from lit_vir.analysis.uncertainty import p_text
from lit_vir.robustness.intervals import (
    CellIntervals,
    PairedCells,
    cell_outcomes,
    corruption_intervals,
    paired_corruptions,
)
from lit_vir.training.callbacks.test_predictions import read_predictions
from lit_vir.training.labels import model_label, recipe_label

__all__ = ["CorruptionRun", "read_corruption_run", "robustness_table"]


@dataclass
class CorruptionRun:
    path: str
    model: str
    seed: int | None
    cells: list[tuple[str, int]]
    outcomes: np.ndarray  # (cells, N)
    labels: np.ndarray  # (cells, N)


def read_corruption_run(folder: Path) -> CorruptionRun | str:
    """The run, or why it is not a corruption test run."""
    if not (folder / "config.yaml").is_file():
        return "no config.yaml"
    predictions = read_predictions(folder)
    if not predictions:
        return "no test_predictions.npz"
    try:
        cells, outcomes, labels = cell_outcomes(predictions)
    except ValueError as error:
        return str(error)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    recipe = recipe_label(config)
    seed = config.get("seed_everything")
    return CorruptionRun(
        str(folder),
        model_label(config) + ("" if recipe == "reference" else f" ({recipe})"),
        seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        cells,
        outcomes,
        labels,
    )


def interval_text(estimate: float, low: float, high: float) -> str:
    return f"{100 * estimate:.2f} [{100 * low:.2f}, {100 * high:.2f}]"


def robustness_table(folders: list[Path], output: Path, baseline: str | None, title: str) -> list[str]:
    """Write robustness.md and robustness.csv; return the skipped folders with their reasons."""
    runs, skipped = [], []
    for folder in folders:
        found = read_corruption_run(folder)
        (runs.append(found) if isinstance(found, CorruptionRun) else skipped.append(f"{folder}: {found}"))
    if not runs:
        raise SystemExit(
            "lit-vir compare --corruptions: none of these is a corruption test run:\n" + "\n".join(skipped)
        )
    cells = runs[0].cells
    models: dict[str, list[CorruptionRun]] = {}
    for run in runs:
        if run.cells != cells or not np.array_equal(run.labels, runs[0].labels):
            skipped.append(f"{run.path}: not the same corrupted images as {runs[0].path}")
            continue
        models.setdefault(run.model, []).append(run)
    intervals = {
        model: corruption_intervals(cells, [run.outcomes for run in members]) for model, members in models.items()
    }
    paired: dict[str, PairedCells | str] = {}
    if baseline:
        if baseline not in models:
            raise SystemExit(f"lit-vir compare: --baseline {baseline!r} is none of the models: {', '.join(models)}")
        reference = {run.seed: run for run in models[baseline]}
        for model, members in models.items():
            if model == baseline:
                continue
            pairs = [(run, reference[run.seed]) for run in members if run.seed in reference]
            paired[model] = (
                paired_corruptions(cells, [a.outcomes for a, _ in pairs], [b.outcomes for _, b in pairs])
                if pairs
                else "no seed in common"
            )
    output.mkdir(parents=True, exist_ok=True)
    lines = markdown(title, cells, models, intervals, paired, baseline)
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped)]
    (output / "robustness.md").write_text("\n".join(lines) + "\n")
    write_csv(output / "robustness.csv", cells, models, intervals, paired)
    return skipped


def markdown(
    title: str,
    cells: list[tuple[str, int]],
    models: dict[str, list[CorruptionRun]],
    intervals: dict[str, CellIntervals],
    paired: dict[str, PairedCells | str],
    baseline: str | None,
) -> list[str]:
    size = next(iter(models.values()))[0].outcomes.shape[1]
    clean = next((index for index, (name, _) in enumerate(cells) if name == "clean"), None)
    lines = [
        f"# {title}",
        "",
        f"{size} test images per cell; 95% intervals: bootstrap over seeds, then images "
        "(resampled jointly across cells). Δ: against the baseline, paired by seed and image.",
        "",
    ]
    header = ["model", "seeds", "clean % [CI]", "mean corruption accuracy % [CI]"]
    if baseline:
        header += [f"Δ mean vs {baseline}, points [CI]", "p"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, members in models.items():
        found = intervals[model]
        row = [model, ", ".join(str(run.seed) for run in members)]
        row.append(
            interval_text(found.accuracy[clean], found.low[clean], found.high[clean]) if clean is not None else "–"
        )
        row.append(interval_text(found.mean.estimate, found.mean.low, found.mean.high) if found.mean else "–")
        if baseline:
            versus = paired.get(model)
            if versus is None:
                row += ["(baseline)", ""]
            elif isinstance(versus, str):
                row += [f"not paired: {versus}", ""]
            else:
                mean = versus.mean
                row += [
                    f"{100 * mean.difference:+.2f} [{100 * mean.low:+.2f}, {100 * mean.high:+.2f}]",
                    p_text(mean.p),
                ]
        lines.append("| " + " | ".join(row) + " |")
    names = list(dict.fromkeys(name for name, _ in cells if name != "clean"))
    lines += ["", "Per corruption (mean over its severities), % [95% CI]:", ""]
    lines += ["| corruption | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for name in names:
        row = [name] + [
            interval_text(
                intervals[model].per_corruption[name].estimate,
                intervals[model].per_corruption[name].low,
                intervals[model].per_corruption[name].high,
            )
            for model in models
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def write_csv(
    path: Path,
    cells: list[tuple[str, int]],
    models: dict[str, list[CorruptionRun]],
    intervals: dict[str, CellIntervals],
    paired: dict[str, PairedCells | str],
) -> None:
    """One row per model and cell: accuracy and interval, and the paired difference where there is a baseline."""
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(
            [
                "model",
                "seeds",
                "corruption",
                "severity",
                "accuracy",
                "low",
                "high",
                "difference",
                "difference_low",
                "difference_high",
                "p",
            ]
        )
        for model, members in models.items():
            found, versus = intervals[model], paired.get(model)
            for index, (name, severity) in enumerate(cells):
                row = [model, len(members), name, severity, found.accuracy[index], found.low[index], found.high[index]]
                if isinstance(versus, PairedCells):
                    row += [versus.difference[index], versus.low[index], versus.high[index], versus.p[index]]
                writer.writerow(row)
            if found.mean is not None:
                row = [
                    model,
                    len(members),
                    "mean (benchmark cells)",
                    "",
                    found.mean.estimate,
                    found.mean.low,
                    found.mean.high,
                ]
                if isinstance(versus, PairedCells) and versus.mean is not None:
                    row += [versus.mean.difference, versus.mean.low, versus.mean.high, versus.mean.p]
                writer.writerow(row)
