"""`lit-vir compare`: turn finished runs into the comparison table, with every accuracy's uncertainty.

Runs of the same model, recipe, dataset and length (epochs, or the time budget of a `max_time` run) are one row,
aggregated over their seeds. Every test accuracy has a 95% interval — a bootstrap over the run's test images, or over
its seeds and their images (`lit_vir.analysis.uncertainty`; the column says which) — from the per-image predictions
each run keeps (`test_predictions.npz`). Against a named baseline row (`--baseline "ViR-1"`), each row's paired
difference on the same test images: McNemar's exact test for two single runs, a paired bootstrap over seeds × images
with several (paired by seed). Beside them, what each run did — images seen, epochs completed (fractional),
optimiser steps, threads and CPU affinity — and what it cost. Test accuracies are those of the best-validation
checkpoint (`test/*`) and of the final weights (`test_last/*`); nothing is selected on the test set.
"""

from __future__ import annotations

import csv
import statistics
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import jsonargparse
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from rich.console import Console
from rich.table import Table

from lit_vir.analysis.uncertainty import (
    Interval,
    PairedDifference,
    accuracy_interval,
    p_text,
    paired_difference,
    t_interval,
)
from lit_vir.commands.robustness_table import robustness_table
from lit_vir.commands.runs import Run, find_runs, read_runs
from lit_vir.config import add_flag, tool_parser, user_errors

__all__ = ["Group", "compare_groups", "group_runs", "main"]

EXAMPLES = """\
examples:
  lit-vir compare logs/*/version_*                       # every run under logs/
  lit-vir compare "sweeps/fmnist_table/runs/*/*" --baseline ViR-1 --output results
  lit-vir compare logs/vir-fashionmnist/version_* logs/visiontransformer-fashionmnist/version_* --output results
  lit-vir compare "runs/**/version_*" --title "Fashion-MNIST, 10 epochs"
  lit-vir compare "logs/robustness/*/*" --corruptions --baseline ViR-1   # corruption test runs, 3 seeds each

Writes compare.md (the rows with their intervals, the paired differences against --baseline, one line per run),
compare.csv (one row per run), compare_summary.csv (one row per model) and compare.png (test accuracy with its
interval against trainable parameters, training FLOPs and training time: the equal-compute frontier).

Peak memory: the process's peak resident set size on a CPU run (everything the Python process held: libraries,
data, model), torch's allocator peak on a GPU run. Epochs completed: images seen / training-set size.
"""

MEMORY_NOTE = (
    "Peak memory: the process's peak resident set size on CPU runs (libraries, data and model: everything the Python "
    "process held), torch's allocator peak on GPU runs. Epochs completed: training images seen / training-set size."
)


@dataclass
class Group:
    """Runs that differ only in their seed: same model, recipe, dataset, length and precision."""

    model: str
    recipe: str
    dataset: str
    length: str
    precision: str
    runs: list[Run]

    @property
    def label(self) -> str:
        return f"{self.model} ({self.recipe})" if self.recipe != "reference" else self.model

    def outcomes(self, prefix: str = "test") -> list[np.ndarray] | None:
        """Each run's per-image outcomes, or None if any run kept no predictions."""
        found = [run.correct(prefix) for run in self.runs]
        return None if any(outcome is None for outcome in found) else found

    def interval(self, prefix: str = "test") -> Interval | None:
        outcomes = self.outcomes(prefix)
        return None if outcomes is None else accuracy_interval(outcomes)

    def t(self) -> Interval | None:
        values = [run.test_acc for run in self.runs]
        return None if any(value is None for value in values) else t_interval(values)


def group_runs(runs: list[Run]) -> list[Group]:
    grouped: dict[tuple[str, str, str, str, str], list[Run]] = {}
    for run in runs:
        grouped.setdefault((run.model, run.recipe, run.dataset, run.length, run.precision), []).append(run)
    by_seed = lambda run: (run.seed is None, run.seed)  # noqa: E731
    return [Group(*key, sorted(members, key=by_seed)) for key, members in grouped.items()]


def baseline_of(group: Group, groups: list[Group], baseline: str) -> Group | None:
    """The baseline row for `group`: named `baseline` (its model label, or label with recipe), on the same dataset;
    the one with the same length if there are several."""
    named = [
        other
        for other in groups
        if baseline in (other.model, other.label) and other.dataset == group.dataset and other is not group
    ]
    same_length = [other for other in named if other.length == group.length]
    return (same_length or named or [None])[0]


def paired_runs(group: Group, baseline: Group) -> tuple[list[Run], list[Run]] | str:
    """Runs of the two rows paired by seed (both must have predictions on the same test images), or why not."""
    by_seed = {run.seed: run for run in baseline.runs}
    pairs = [(run, by_seed[run.seed]) for run in group.runs if run.seed in by_seed]
    if not pairs and len(group.runs) == 1 and len(baseline.runs) == 1:
        pairs = [(group.runs[0], baseline.runs[0])]  # two single runs: paired on their images whatever their seeds
    if not pairs:
        return "no seed in common"
    for run, other in pairs:
        if run.correct() is None or other.correct() is None:
            return "no per-image predictions (test_predictions.npz)"
        if not np.array_equal(run.labels(), other.labels()):
            return "not the same test images"
    return [run for run, _ in pairs], [other for _, other in pairs]


def compare_groups(group: Group, baseline: Group) -> PairedDifference | str:
    paired = paired_runs(group, baseline)
    if isinstance(paired, str):
        return paired
    ours, theirs = paired
    return paired_difference([run.correct() for run in ours], [run.correct() for run in theirs])


def pct(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}"


def with_interval(interval: Interval | None, estimate: float | None = None) -> str:
    """`88.33 [87.21, 89.40]` (percent), or the bare estimate where there is no interval."""
    if interval is None:
        return pct(estimate)
    return f"{pct(interval.estimate)} [{pct(interval.low)}, {pct(interval.high)}]"


def bounded(interval: Interval | None) -> str:
    """A t-interval of accuracies, cut to [0, 100]% (with 2 seeds its half-width is 12.7 standard errors)."""
    if interval is None:
        return "–"
    return f"[{pct(max(0.0, interval.low))}, {pct(min(1.0, interval.high))}]"


def mean_sd(values: list[float | None], scale: float = 1.0, digits: int = 2) -> str:
    present = [value for value in values if value is not None]
    if not present:
        return "–"
    mean = f"{scale * statistics.fmean(present):.{digits}f}"
    return mean if len(present) < 2 else f"{mean} ± {scale * statistics.stdev(present):.{digits}f}"


def difference_text(result: PairedDifference | str | None) -> tuple[str, str, str]:
    """(Δ in points with its interval, p, the test) for the table."""
    if result is None:
        return "", "", ""
    if isinstance(result, str):
        return f"not paired: {result}", "", ""
    delta = f"{100 * result.difference:+.2f} [{100 * result.low:+.2f}, {100 * result.high:+.2f}]"
    p = p_text(result.p) + (f" (sign-flip {p_text(result.sign_flip_p)})" if result.sign_flip_p is not None else "")
    return delta, p, result.test + (f", {result.seeds} seeds" if result.seeds > 1 else "")


def threads_text(runs: list[Run]) -> str:
    """`1 on 1`: torch threads on which cores (the CPU affinity), as the runs recorded them."""
    seen = sorted({f"{run.threads} on {run.cpu_affinity or '?'}" for run in runs if run.threads})
    return "/".join(seen) or "–"


SUMMARY_COLUMNS = (
    "model",
    "recipe",
    "dataset",
    "length",
    "runs",
    "test acc % (best val) [95% CI]",
    "CI over",
    "t-interval over seeds",
    "Δ vs baseline, points [95% CI]",
    "p",
    "test",
    "test acc % (final)",
    "val acc % (best)",
    "test images",
    "epochs completed",
    "images seen",
    "optimiser steps",
    "trainable",
    "fixed",
    "peak memory MiB",
    "epoch s",
    "threads",
    "precision",
    "train FLOPs",
)


def summary_rows(groups: list[Group], baseline: str | None) -> list[list[str]]:
    rows = []
    for group in groups:
        interval = group.interval()
        t = group.t()
        versus = None
        if baseline:
            other = baseline_of(group, groups, baseline)
            versus = "baseline" if group.model == baseline or group.label == baseline else None
            if versus is None:
                versus = compare_groups(group, other) if other else f"no {baseline} row on {group.dataset}"
        delta, p, test = ("(baseline)", "", "") if versus == "baseline" else difference_text(versus)
        first = group.runs[0]
        sizes = sorted({run.test_images for run in group.runs if run.test_images})
        rows.append(
            [
                group.model,
                group.recipe,
                group.dataset,
                group.length,
                str(len(group.runs)),
                with_interval(interval) if interval else mean_sd([run.test_acc for run in group.runs], scale=100),
                interval.over if interval else "–",
                bounded(t),
                delta,
                p,
                test,
                mean_sd([run.test_last_acc for run in group.runs], scale=100),
                mean_sd([run.val_acc_best for run in group.runs], scale=100),
                "/".join(map(str, sizes)) or "–",
                mean_sd([run.epochs_completed for run in group.runs]),
                mean_sd([run.images_seen for run in group.runs], digits=0),
                mean_sd([run.optimizer_steps for run in group.runs], digits=0),
                "–" if first.trainable_params is None else f"{first.trainable_params:,}",
                "–" if first.fixed_params is None else f"{first.fixed_params:,}",
                mean_sd([run.peak_memory_mib for run in group.runs], digits=0),
                mean_sd([run.epoch_time_s for run in group.runs], digits=1),
                threads_text(group.runs),
                group.precision,
                mean_sd([run.train_flops for run in group.runs], scale=1e-12, digits=2)
                + (" T" if first.train_flops else ""),
            ]
        )
    return rows


CONSOLE_COLUMNS = (  # what the terminal shows; the files have every column
    "model",
    "recipe",
    "dataset",
    "length",
    "runs",
    "test acc % (best val) [95% CI]",
    "CI over",
    "Δ vs baseline, points [95% CI]",
    "p",
    "epochs completed",
)

RUN_COLUMNS = (
    "model",
    "recipe",
    "dataset",
    "seed",
    "test acc % (best val) [95% CI over images]",
    "Δ vs baseline [95% CI]",
    "p",
    "test acc % (final)",
    "val acc % (best)",
    "epochs completed",
    "images seen",
    "optimiser steps",
    "threads",
    "cores",
    "peak memory MiB",
    "fit s",
    "device",
    "run",
)


def run_rows(groups: list[Group], baseline: str | None) -> tuple[list[list[str]], list[dict]]:
    """The per-run table (Markdown cells) and the per-run CSV records (numbers)."""
    rows, records = [], []
    for group in groups:
        other = baseline_of(group, groups, baseline) if baseline else None
        for run in group.runs:
            correct = run.correct()
            interval = accuracy_interval([correct]) if correct is not None else None
            versus: PairedDifference | str | None = None
            if other is not None and group.model != baseline and group.label != baseline:
                partner = next((candidate for candidate in other.runs if candidate.seed == run.seed), None)
                if partner is None and len(group.runs) == len(other.runs) == 1:
                    partner = other.runs[0]
                versus = "no run of that seed" if partner is None else paired_pair(run, partner)
            delta, p, _ = difference_text(versus)
            rows.append(
                [
                    run.model,
                    run.recipe,
                    run.dataset,
                    str(run.seed),
                    with_interval(interval, run.test_acc),
                    delta,
                    p,
                    pct(run.test_last_acc),
                    pct(run.val_acc_best),
                    "–" if run.epochs_completed is None else f"{run.epochs_completed:.2f}",
                    "–" if run.images_seen is None else f"{run.images_seen:,}",
                    "–" if run.optimizer_steps is None else str(run.optimizer_steps),
                    "–" if run.threads is None else str(run.threads),
                    run.cpu_affinity or "–",
                    "–" if run.peak_memory_mib is None else f"{run.peak_memory_mib:.0f}",
                    "–" if run.fit_time_s is None else f"{run.fit_time_s:.1f}",
                    run.device,
                    run.path,
                ]
            )
            record = {field.name: getattr(run, field.name) for field in fields(run) if field.name != "predictions"}
            record |= {
                "test_acc_low": interval.low if interval else None,
                "test_acc_high": interval.high if interval else None,
                "vs_baseline": baseline if isinstance(versus, PairedDifference) else None,
                "difference": versus.difference if isinstance(versus, PairedDifference) else None,
                "difference_low": versus.low if isinstance(versus, PairedDifference) else None,
                "difference_high": versus.high if isinstance(versus, PairedDifference) else None,
                "p": versus.p if isinstance(versus, PairedDifference) else None,
                "test": versus.test if isinstance(versus, PairedDifference) else None,
            }
            records.append(record)
    return rows, records


def paired_pair(run: Run, partner: Run) -> PairedDifference | str:
    """One run against one run of the baseline, on the same test images (McNemar)."""
    ours, theirs = run.correct(), partner.correct()
    if ours is None or theirs is None:
        return "no per-image predictions (test_predictions.npz)"
    if not np.array_equal(run.labels(), partner.labels()):
        return "not the same test images"
    return paired_difference([ours], [theirs])


def markdown(columns: tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def figure(groups: list[Group], title: str) -> Figure:
    """Test accuracy (best-val checkpoint; final validation accuracy if untested) against trainable parameters,
    training FLOPs and training time: one point per row, its bar the 95% interval (the ±1 sd over seeds where
    the runs kept no predictions)."""
    plot = Figure(figsize=(15, 4.6))
    panels = plot.subplots(1, 3)
    axes_x = (
        ("trainable parameters", lambda run: run.trainable_params),
        ("training FLOPs", lambda run: run.train_flops),
        ("training time (s)", lambda run: run.fit_time_s),
    )
    one_dataset = len({group.dataset for group in groups}) == 1  # then the title names it, not each label
    spans: dict[str, list[float]] = {name: [] for name, _ in axes_x}
    for group in groups:
        accuracies = [run.test_acc if run.test_acc is not None else run.val_acc_final for run in group.runs]
        if any(value is None for value in accuracies):
            continue
        y = 100 * statistics.fmean(accuracies)
        interval = group.interval()
        if interval is not None:
            bar = [[y - 100 * interval.low], [100 * interval.high - y]]
        else:
            spread = 100 * statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
            bar = [[spread], [spread]]  # (2, 1): below and above the one point
        label = group.label + ("" if one_dataset else f" {group.dataset}")
        for axes, (name, x_of) in zip(panels, axes_x, strict=True):
            xs = [x_of(run) for run in group.runs]
            if any(value is None for value in xs):
                continue
            spans[name] += xs
            axes.errorbar(statistics.fmean(xs), y, yerr=bar, fmt="o", markersize=4, capsize=2)
            axes.annotate(label, (statistics.fmean(xs), y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    for axes, (name, _) in zip(panels, axes_x, strict=True):
        if spans[name] and max(spans[name]) > 10 * min(spans[name]):  # a log axis only where values span a decade
            axes.set_xscale("log")
            axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel(name)
        axes.set_ylabel("test accuracy % (95% interval)")
        axes.grid(alpha=0.3)
    plot.suptitle(title, fontsize=10)
    plot.tight_layout()
    return plot


def parser() -> jsonargparse.ArgumentParser:
    parse = tool_parser("lit-vir compare", __doc__.split("\n\n")[0], EXAMPLES)
    parse.add_argument("runs", nargs="+", help="run folders or glob patterns")
    parse.add_argument("--output", default="comparison", help="folder for the tables and the plot")
    parse.add_argument("--title", default="ViR against ViT", help="title of the plot and the Markdown file")
    add_flag(
        parse,
        "--corruptions",
        help="the runs are `lit-vir test` runs on a corruption benchmark: write robustness.md/.csv (every model's "
        "clean and mean corruption accuracy and each corruption's, with intervals over seeds and images, and the "
        "paired difference against --baseline)",
    )
    parse.add_argument(
        "--baseline",
        type=str | None,
        default=None,
        help='the row every other is compared with, image by image: its model label (e.g. "ViR-1"), or label and '
        'recipe as shown (e.g. "ViT-Small-9 (from-scratch)")',
    )
    return parse


def write_csv(path: Path, header: list[str], rows: list) -> None:
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)


@user_errors()  # lit-vir's one-line messages and exit codes for what a user can fix
def main(argv: list[str]) -> None:
    arguments = parser().parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 200)
    if arguments.corruptions:
        output = Path(arguments.output)
        for reason in robustness_table(find_runs(arguments.runs), output, arguments.baseline, arguments.title):
            console.print(f"[yellow]skipped {reason}[/]")
        console.print((output / "robustness.md").read_text())
        console.print(f"wrote {output}/robustness.md, robustness.csv")
        return
    runs, skipped = read_runs(arguments.runs)
    for run in skipped:
        console.print(f"[yellow]skipped {run.path}: {run.reason}[/]")
    if not runs:
        raise SystemExit("lit-vir compare: none of these runs can be compared (each is listed above with the reason)")
    groups = group_runs(runs)
    if arguments.baseline and not any(arguments.baseline in (group.model, group.label) for group in groups):
        names = ", ".join(sorted({f'"{group.label}"' for group in groups}))
        raise SystemExit(f"lit-vir compare: --baseline {arguments.baseline!r} is none of the rows: {names}")
    output = Path(arguments.output)
    output.mkdir(parents=True, exist_ok=True)
    summary = summary_rows(groups, arguments.baseline)
    per_run, records = run_rows(groups, arguments.baseline)
    notes = [MEMORY_NOTE]
    if skipped:
        notes.append("Skipped: " + "; ".join(f"{run.path} ({run.reason})" for run in skipped) + ".")
    (output / "compare.md").write_text(
        f"# {arguments.title}\n\n{markdown(SUMMARY_COLUMNS, summary)}\n\n"
        + "\n\n".join(notes)
        + f"\n\n## Runs\n\n{markdown(RUN_COLUMNS, per_run)}\n"
    )
    columns = list(records[0])
    write_csv(output / "compare.csv", columns, [[record[column] for column in columns] for record in records])
    write_csv(output / "compare_summary.csv", list(SUMMARY_COLUMNS), summary)
    figure(groups, arguments.title).savefig(output / "compare.png", dpi=130)
    shown = Table(title=arguments.title)
    console_columns = [SUMMARY_COLUMNS.index(name) for name in CONSOLE_COLUMNS]
    for index in console_columns:
        name = SUMMARY_COLUMNS[index]
        shown.add_column(name, justify="left" if name in ("model", "recipe", "dataset") else "right")
    for row in summary:
        shown.add_row(*[row[index] for index in console_columns])
    console.print(shown)
    console.print(f"{len(runs)} runs; wrote {output}/compare.md, compare.csv, compare_summary.csv, compare.png")
