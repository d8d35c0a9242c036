"""Corruption-robustness metrics (Hendrycks & Dietterich, ICLR 2019; spec `corruptions.md`, "Metrics").

Per cell (corruption c, severity s): top-1 error E(c, s). Per corruption (CIFAR convention): accuracy
over its severities. The mean corruption accuracy averages the 15 benchmark corruptions only (the extra
ones are reported beside it); the CIFAR "mCE" is 100 − that, in percent. Against a reference model's
errors E_base — for CIFAR there is no AlexNet, so the user names one (e.g. our ViT baseline):

    CE_c  = Σ_s E(c, s) / Σ_s E_base(c, s)
    rCE_c = Σ_s (E(c, s) − E_clean) / Σ_s (E_base(c, s) − E_base,clean)

and mCE / relative mCE are their means over the benchmark corruptions, in percent.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from lit_vir.data.corrupted import CLEAN
from lit_vir.data.corruptions import BENCHMARK_CORRUPTIONS

__all__ = ["CorruptionSummary", "load_summary", "summarize", "with_intervals"]


@dataclass(frozen=True)
class CorruptionSummary:
    """Accuracies per cell and the aggregate metrics; `errors_vs_reference` only with a reference."""

    cells: dict[str, dict[int, float]]  # corruption → severity → accuracy in [0, 1]
    clean_accuracy: float | None
    per_corruption: dict[str, float]  # corruption → accuracy over its severities
    mean_corruption_accuracy: float | None  # over the benchmark corruptions present
    benchmark_corruptions: list[str]  # those that entered the mean
    mce_unnormalised: float | None  # 100 − 100·mean accuracy (the CIFAR convention)
    corruption_errors: dict[str, float] = field(default_factory=dict)  # CE_c in percent
    relative_corruption_errors: dict[str, float] = field(default_factory=dict)  # rCE_c in percent
    mce: float | None = None
    relative_mce: float | None = None
    reference: str | None = None
    # 95% intervals (lit_vir.robustness.intervals): per cell, per corruption, of the mean; over what they resample
    cell_intervals: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    per_corruption_intervals: dict[str, list[float]] = field(default_factory=dict)
    mean_corruption_interval: list[float] | None = None
    clean_interval: list[float] | None = None
    interval_over: str | None = None
    test_images: int | None = None

    def to_json(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    def rows(self) -> list[dict[str, object]]:
        """One row per cell, for CSV files (its interval where known)."""
        rows = []
        for name, by_severity in self.cells.items():
            for severity, accuracy in sorted(by_severity.items()):
                low, high = self.cell_intervals.get(name, {}).get(severity, (None, None))
                rows.append(
                    {
                        "corruption": name,
                        "severity": severity,
                        "accuracy": accuracy,
                        "error": 1.0 - accuracy,
                        "accuracy_low": low,
                        "accuracy_high": high,
                    }
                )
        return rows


def load_summary(path: str | Path) -> CorruptionSummary:
    """A summary written by `CorruptionSummary.to_json` (e.g. a reference model's run)."""
    data = json.loads(Path(path).read_text())
    data["cells"] = {name: {int(s): acc for s, acc in by.items()} for name, by in data["cells"].items()}
    data["cell_intervals"] = {
        name: {int(s): bounds for s, bounds in by.items()} for name, by in data.get("cell_intervals", {}).items()
    }
    return CorruptionSummary(**data)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(
    cell_accuracy: dict[tuple[str, int], float], reference: CorruptionSummary | None = None, reference_name=None
) -> CorruptionSummary:
    """Aggregate per-cell accuracies (the clean test set as the cell ("clean", 0), if present)."""
    clean = cell_accuracy.get((CLEAN, 0))
    cells: dict[str, dict[int, float]] = {}
    for (name, severity), accuracy in cell_accuracy.items():
        if name != CLEAN:
            cells.setdefault(name, {})[severity] = accuracy
    per_corruption = {name: sum(by.values()) / len(by) for name, by in cells.items()}
    benchmark = [name for name in BENCHMARK_CORRUPTIONS if name in cells]
    mean_accuracy = _mean([per_corruption[name] for name in benchmark])
    summary = dict(
        cells=cells,
        clean_accuracy=clean,
        per_corruption=per_corruption,
        mean_corruption_accuracy=mean_accuracy,
        benchmark_corruptions=benchmark,
        mce_unnormalised=None if mean_accuracy is None else 100.0 * (1.0 - mean_accuracy),
    )
    if reference is None:
        return CorruptionSummary(**summary)
    errors, relative = {}, {}
    for name in benchmark:
        severities = [s for s in cells[name] if s in reference.cells.get(name, {})]
        if not severities:
            continue
        ours = [1.0 - cells[name][s] for s in severities]
        theirs = [1.0 - reference.cells[name][s] for s in severities]
        if sum(theirs) > 0:
            errors[name] = 100.0 * sum(ours) / sum(theirs)
        if clean is not None and reference.clean_accuracy is not None:
            ours_gap = sum(e - (1.0 - clean) for e in ours)
            theirs_gap = sum(e - (1.0 - reference.clean_accuracy) for e in theirs)
            if theirs_gap != 0:
                relative[name] = 100.0 * ours_gap / theirs_gap
    return CorruptionSummary(
        **summary,
        corruption_errors=errors,
        relative_corruption_errors=relative,
        mce=_mean(list(errors.values())),
        relative_mce=_mean(list(relative.values())),
        reference=reference_name,
    )


def with_intervals(summary: CorruptionSummary, intervals, test_images: int) -> CorruptionSummary:
    """The summary with the 95% intervals of a `lit_vir.robustness.intervals.CellIntervals` (clean included)."""
    cells: dict[str, dict[int, list[float]]] = {}
    clean = None
    for (name, severity), low, high in zip(intervals.cells, intervals.low, intervals.high, strict=True):
        if name == CLEAN:
            clean = [float(low), float(high)]
        else:
            cells.setdefault(name, {})[severity] = [float(low), float(high)]
    per_corruption = {
        name: [interval.low, interval.high] for name, interval in intervals.per_corruption.items() if name != CLEAN
    }
    mean = None if intervals.mean is None else [intervals.mean.low, intervals.mean.high]
    return replace(
        summary,
        cell_intervals=cells,
        per_corruption_intervals=per_corruption,
        mean_corruption_interval=mean,
        clean_interval=clean,
        interval_over=intervals.over,
        test_images=test_images,
    )
