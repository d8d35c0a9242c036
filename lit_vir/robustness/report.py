"""How corruption results are shown: a Rich table, CSV/JSON files and a heat-map figure."""

from __future__ import annotations

import csv
from pathlib import Path

from matplotlib.figure import Figure
from rich.table import Table

from lit_vir.robustness.metrics import CorruptionSummary

__all__ = ["corruption_heatmap", "corruption_table", "paired_table", "write_corruption_files", "write_paired_file"]


def _severities(summary: CorruptionSummary) -> list[int]:
    return sorted({severity for by in summary.cells.values() for severity in by})


def corruption_table(summary: CorruptionSummary, title: str = "Accuracy under corruption") -> Table:
    """Rows: corruptions (benchmark first, extras after); columns: severities, mean, CE and rCE if known."""
    severities = _severities(summary)
    table = Table(title=title)
    table.add_column("corruption")
    for severity in severities:
        table.add_column(f"s{severity}", justify="right")
    table.add_column("mean", justify="right", style="bold")
    if summary.corruption_errors:
        table.add_column("CE %", justify="right")
    if summary.relative_corruption_errors:
        table.add_column("rCE %", justify="right")
    names = summary.benchmark_corruptions + [n for n in summary.cells if n not in summary.benchmark_corruptions]
    for name in names:
        by_severity = summary.cells[name]
        row = [name if name in summary.benchmark_corruptions else f"{name} (extra)"]
        row += [f"{100 * by_severity[s]:.2f}" if s in by_severity else "" for s in severities]
        interval = summary.per_corruption_intervals.get(name)
        bounds = f" [{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]" if interval else ""
        row.append(f"{100 * summary.per_corruption[name]:.2f}{bounds}")
        if summary.corruption_errors:
            row.append(f"{summary.corruption_errors[name]:.1f}" if name in summary.corruption_errors else "")
        if summary.relative_corruption_errors:
            relative = summary.relative_corruption_errors.get(name)
            row.append("" if relative is None else f"{relative:.1f}")
        table.add_row(*row)
    footer = []
    if summary.clean_accuracy is not None:
        footer.append(f"clean {100 * summary.clean_accuracy:.2f}%{bracket(summary.clean_interval)}")
    if summary.mean_corruption_accuracy is not None:
        footer.append(
            f"mean corruption accuracy {100 * summary.mean_corruption_accuracy:.2f}%"
            f"{bracket(summary.mean_corruption_interval)} "
            f"over {len(summary.benchmark_corruptions)} benchmark corruptions "
            f"(CIFAR mCE {summary.mce_unnormalised:.2f})"
        )
    if summary.interval_over:
        footer.append(f"[95% intervals, bootstrap over {summary.interval_over}: {summary.test_images} test images]")
    if summary.mce is not None:
        footer.append(f"mCE {summary.mce:.1f}% vs {summary.reference}")
    if summary.relative_mce is not None:
        footer.append(f"relative mCE {summary.relative_mce:.1f}%")
    table.caption = "; ".join(footer)
    return table


def bracket(interval: list[float] | None) -> str:
    return f" [{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]" if interval else ""


def paired_table(paired, other: str) -> Table:
    """This model − `other` per corruption (mean over severities) and on the mean, on the same corrupted images."""
    table = Table(title=f"Paired with {other}: difference in accuracy, points [95% interval]")
    table.add_column("corruption")
    table.add_column("Δ per severity", justify="right")
    names = list(dict.fromkeys(name for name, _ in paired.cells))
    for name in names:
        columns = [index for index, (other_name, _) in enumerate(paired.cells) if other_name == name]
        cells = " ".join(f"{100 * paired.difference[index]:+.1f}" for index in columns)
        table.add_row(name, cells)
    if paired.mean is not None:
        mean = paired.mean
        table.caption = (
            f"mean over the benchmark cells: {100 * mean.difference:+.2f} "
            f"[{100 * mean.low:+.2f}, {100 * mean.high:+.2f}], p = {mean.p:.3g} ({mean.test}); "
            f"per cell: {paired.test}, corruption_paired.csv"
        )
    return table


def write_paired_file(paired, other: str, folder: Path) -> Path:
    """`corruption_paired.csv`: per cell, this model − `other`, its 95% interval and p; then the mean."""
    path = folder / "corruption_paired.csv"
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(
            ["corruption", "severity", "difference", "difference_low", "difference_high", "p", "test", "vs"]
        )
        for (name, severity), delta, low, high, p in zip(
            paired.cells, paired.difference, paired.low, paired.high, paired.p, strict=True
        ):
            writer.writerow([name, severity, delta, low, high, p, paired.test, other])
        if paired.mean is not None:
            mean = paired.mean
            writer.writerow(
                ["mean (benchmark cells)", "", mean.difference, mean.low, mean.high, mean.p, mean.test, other]
            )
    return path


def corruption_heatmap(summary: CorruptionSummary, title: str = "Accuracy (%) per corruption and severity") -> Figure:
    severities = _severities(summary)
    names = list(summary.cells)
    values = [[100 * summary.cells[name].get(s, float("nan")) for s in severities] for name in names]
    figure = Figure(figsize=(2.5 + 0.8 * len(severities), 1.2 + 0.35 * len(names)))  # no pyplot: headless
    axes = figure.subplots()
    image = axes.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    axes.set_xticks(range(len(severities)), [f"s{s}" for s in severities])
    axes.set_yticks(range(len(names)), names)
    for row, by_severity in enumerate(values):
        for column, value in enumerate(by_severity):
            axes.text(
                column,
                row,
                f"{value:.0f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if value < 60 else "black",
            )
    figure.colorbar(image, ax=axes, label="accuracy %")
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure


def write_corruption_files(summary: CorruptionSummary, folder: Path) -> list[Path]:
    """`corruption_accuracy.csv` (one row per cell), `corruption_summary.json` and `corruption_heatmap.png`."""
    folder.mkdir(parents=True, exist_ok=True)
    table_path, summary_path, figure_path = (
        folder / name for name in ("corruption_accuracy.csv", "corruption_summary.json", "corruption_heatmap.png")
    )
    with open(table_path, "w", newline="") as stream:
        writer = csv.DictWriter(
            stream, fieldnames=["corruption", "severity", "accuracy", "error", "accuracy_low", "accuracy_high"]
        )
        writer.writeheader()
        writer.writerows(summary.rows())
    summary.to_json(summary_path)
    figure = corruption_heatmap(summary)
    figure.savefig(figure_path, dpi=120)
    return [table_path, summary_path, figure_path]


def perturbation_figure(rows: list[dict]) -> Figure:
    """One panel per perturbation kind, accuracy against level, a line per model (`perturb` rows)."""
    kinds = list(dict.fromkeys(row["kind"] for row in rows))
    figure = Figure(figsize=(4 * len(kinds), 3.2))
    for axes, kind in zip(figure.subplots(1, len(kinds), squeeze=False)[0], kinds, strict=True):
        for model in dict.fromkeys(row["model"] for row in rows if row["kind"] == kind):
            points = sorted(
                (row["level"], 100 * row["accuracy"]) for row in rows if row["kind"] == kind and row["model"] == model
            )
            axes.plot(*zip(*points, strict=True), marker="o", label=model)
        axes.set_xlabel(
            {
                "spectral_radius": "α factor",
                "noise": "relative noise ε",
                "input_sparsity": "input sparsity SD",
                "reservoir_seed": "seed of W",
            }[kind]
        )
        if kind == "noise":
            axes.set_xscale("symlog", linthresh=1e-3)
        axes.set_ylabel("accuracy %")
        axes.set_title(kind.replace("_", " "), fontsize=9)
        axes.grid(alpha=0.3)
    figure.axes[0].legend(fontsize=7)
    figure.tight_layout()
    return figure
