"""`lit-vir compare`: turn finished runs into the paper's comparison table and plots.

Each run folder (`logs/<name>/version_N`) holds what `lit-vir fit` wrote: the resolved `config.yaml`,
`environment.yaml` and TensorBoard events. From them, per run: model (with its ablation), recipe, dataset,
seed, epochs and time budget; final and best validation accuracy; test accuracy of the best-validation
checkpoint (`test/acc`) and of the final weights (`test_last/acc`, both from `--test_after_fit`); trainable
and fixed parameters; training FLOPs per image and in total; peak memory; median epoch time and total fit
time. Runs of the same model, recipe, dataset and length (epochs, or the time budget of a `max_time` run)
are then aggregated over seeds as mean ± sd. Nothing is selected on the test set.
"""

from __future__ import annotations

import csv
import glob
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import jsonargparse
import yaml
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from rich.console import Console
from rich.table import Table
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_vir.config import tool_parser, user_errors
from lit_vir.training.labels import budget_label, model_label, precision_label, recipe_label

EXAMPLES = """\
examples:
  lit-vir compare logs/*/version_*                       # every run under logs/
  lit-vir compare logs/vir-fashionmnist/version_* logs/visiontransformer-fashionmnist/version_* --output results
  lit-vir compare "runs/**/version_*" --title "Fashion-MNIST, 10 epochs"

Writes compare.md (aggregated and per-run tables), compare.csv (one row per run), compare_summary.csv
(mean and sd per model) and compare.png (accuracy against trainable parameters, training FLOPs and training
time: the equal-compute frontier, one point per model with its sd over seeds).
"""

METRICS = ("test_acc", "test_last_acc", "val_acc_final", "val_acc_best")


@dataclass
class Run:
    """What one run folder says about itself (None where it was not logged)."""

    path: str
    model: str
    recipe: str
    dataset: str
    seed: int | None
    epochs: int
    budget: str
    precision: str
    val_acc_final: float | None
    val_acc_best: float | None
    test_acc: float | None
    test_last_acc: float | None
    trainable_params: int | None
    fixed_params: int | None
    peak_memory_mib: float | None
    epoch_time_s: float | None
    fit_time_s: float | None
    train_flops_per_image: float | None
    train_flops: float | None
    device: str

    @property
    def length(self) -> str:
        """What bounds the run: its time budget, else its epochs."""
        return self.budget or f"{self.epochs} epochs"


def scalar_series(events: EventAccumulator, tag: str) -> list[float]:
    return [event.value for event in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


def read_run(folder: Path) -> Run:
    config = yaml.safe_load((folder / "config.yaml").read_text())
    environment_file = folder / "environment.yaml"
    environment = yaml.safe_load(environment_file.read_text()) if environment_file.exists() else {}
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    series = {
        tag: scalar_series(events, tag)
        for tag in (
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
        )
    }
    last = lambda tag: series[tag][-1] if series[tag] else None  # noqa: E731
    seed = config.get("seed_everything")
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
        val_acc_best=max(series["val/acc"]) if series["val/acc"] else None,
        test_acc=last("test/acc"),
        test_last_acc=last("test_last/acc"),
        trainable_params=int(last("params/trainable")) if series["params/trainable"] else None,
        fixed_params=int(last("params/fixed")) if series["params/fixed"] else None,
        peak_memory_mib=max(series["perf/peak_memory_mib"]) if series["perf/peak_memory_mib"] else None,
        epoch_time_s=statistics.median(series["perf/epoch_time_s"]) if series["perf/epoch_time_s"] else None,
        fit_time_s=last("perf/fit_time_s"),
        train_flops_per_image=last("perf/train_flops_per_image"),
        train_flops=last("perf/train_flops_total"),
        device=environment.get("cuda_device") or environment.get("cpu") or "unknown",
    )


def find_runs(patterns: list[str]) -> list[Path]:
    """Run folders (those with a config.yaml) matching the given paths or glob patterns."""
    found = {Path(path) for pattern in patterns for path in glob.glob(pattern, recursive=True)}
    runs = sorted(path for path in found if (path / "config.yaml").is_file())
    if not runs:
        raise SystemExit(f"lit-vir compare: no run folder (with config.yaml) matches {' '.join(patterns)}")
    return runs


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def mean_sd(values: list[float | None], scale: float = 100.0, digits: int = 2) -> str:
    present = [value for value in values if value is not None]
    if not present:
        return "–"
    mean = f"{scale * statistics.fmean(present):.{digits}f}"
    return mean if len(present) < 2 else f"{mean} ± {scale * statistics.stdev(present):.{digits}f}"


def groups(runs: list[Run]) -> dict[tuple[str, str, str, str, str], list[Run]]:
    """Runs that differ only in their seed: same model, recipe, dataset, length and precision."""
    grouped: dict[tuple[str, str, str, str, str], list[Run]] = {}
    for run in runs:
        grouped.setdefault((run.model, run.recipe, run.dataset, run.length, run.precision), []).append(run)
    return grouped


def flops(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


SUMMARY_COLUMNS = (
    "model",
    "dataset",
    "epochs",
    "runs",
    "test acc % (best val)",
    "test acc % (final)",
    "val acc % (best)",
    "trainable",
    "fixed",
    "peak MiB",
    "epoch s",
    "precision",
    "recipe",
    "budget",
    "train FLOPs",
    "FLOPs/image",
)


def summary_rows(runs: list[Run]) -> list[list[str]]:
    rows = []
    for (model, recipe, dataset, _, precision), members in groups(runs).items():
        first = members[0]
        epochs = sorted({run.epochs for run in members})
        rows.append(
            [
                model,
                dataset,
                "–".join(map(str, epochs[:: max(1, len(epochs) - 1)])),
                str(len(members)),
                mean_sd([run.test_acc for run in members]),
                mean_sd([run.test_last_acc for run in members]),
                mean_sd([run.val_acc_best for run in members]),
                "–" if first.trainable_params is None else f"{first.trainable_params:,}",
                "–" if first.fixed_params is None else f"{first.fixed_params:,}",
                mean_sd([run.peak_memory_mib for run in members], scale=1, digits=0),
                mean_sd([run.epoch_time_s for run in members], scale=1, digits=1),
                precision,
                recipe,
                first.budget or "–",
                mean_sd([run.train_flops for run in members], scale=1e-12, digits=2)
                + (" T" if first.train_flops else ""),
                flops(first.train_flops_per_image),
            ]
        )
    return rows


RUN_COLUMNS = (
    "model",
    "dataset",
    "seed",
    "epochs",
    "test acc % (best val)",
    "test acc % (final)",
    "val acc % (final)",
    "val acc % (best)",
    "peak MiB",
    "epoch s",
    "fit s",
    "precision",
    "recipe",
    "budget",
    "train FLOPs",
    "device",
    "run",
)


def run_rows(runs: list[Run]) -> list[list[str]]:
    number = lambda value, digits: "–" if value is None else f"{value:.{digits}f}"  # noqa: E731
    return [
        [
            run.model,
            run.dataset,
            str(run.seed),
            str(run.epochs),
            percent(run.test_acc),
            percent(run.test_last_acc),
            percent(run.val_acc_final),
            percent(run.val_acc_best),
            number(run.peak_memory_mib, 0),
            number(run.epoch_time_s, 1),
            number(run.fit_time_s, 1),
            run.precision,
            run.recipe,
            run.budget or "–",
            flops(run.train_flops),
            run.device,
            run.path,
        ]
        for run in runs
    ]


def markdown(columns: tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def figure(runs: list[Run], title: str) -> Figure:
    """Test accuracy (best-val checkpoint; final validation accuracy if untested) against trainable parameters,
    training FLOPs and training time: one point per model (mean over seeds, bars ±1 sd), labelled."""
    plot = Figure(figsize=(15, 4.6))
    panels = plot.subplots(1, 3)
    axes_x = (
        ("trainable parameters", lambda run: run.trainable_params),
        ("training FLOPs", lambda run: run.train_flops),
        ("training time (s)", lambda run: run.fit_time_s),
    )
    grouped = groups(runs)
    one_dataset = len({dataset for _, _, dataset, _, _ in grouped}) == 1  # then the title names it, not each label
    spans = {name: [] for name, _ in axes_x}
    for (model, recipe, dataset, _, _), members in grouped.items():
        accuracies = [run.test_acc if run.test_acc is not None else run.val_acc_final for run in members]
        if any(value is None for value in accuracies):
            continue
        label = model + ("" if one_dataset else f" {dataset}") + ("" if recipe == "reference" else f" ({recipe})")
        for axes, (name, x_of) in zip(panels, axes_x, strict=True):
            xs = [x_of(run) for run in members]
            if any(value is None for value in xs):
                continue
            spans[name] += xs
            y = 100 * statistics.fmean(accuracies)
            spread = 100 * statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
            axes.errorbar(statistics.fmean(xs), y, yerr=spread, fmt="o", markersize=4, capsize=2)
            axes.annotate(label, (statistics.fmean(xs), y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    for axes, (name, _) in zip(panels, axes_x, strict=True):
        if spans[name] and max(spans[name]) > 10 * min(spans[name]):  # a log axis only where values span a decade
            axes.set_xscale("log")
            axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel(name)
        axes.set_ylabel("test accuracy %")
        axes.grid(alpha=0.3)
    plot.suptitle(title, fontsize=10)
    plot.tight_layout()
    return plot


def parser() -> jsonargparse.ArgumentParser:
    parse = tool_parser("lit-vir compare", __doc__.split("\n\n")[0], EXAMPLES)
    parse.add_argument("runs", nargs="+", help="run folders or glob patterns")
    parse.add_argument("--output", default="comparison", help="folder for the tables and the plot")
    parse.add_argument("--title", default="ViR against ViT", help="title of the plot and the Markdown file")
    return parse


@user_errors()  # lit-vir's one-line messages and exit codes for what a user can fix
def main(argv: list[str]) -> None:
    arguments = parser().parse_args(argv)
    runs = [run for run in map(read_run, find_runs(arguments.runs)) if run.epochs > 0]  # test-only runs: no row
    if not runs:
        raise SystemExit("lit-vir compare: none of these runs trained (no val/acc logged)")
    output = Path(arguments.output)
    output.mkdir(parents=True, exist_ok=True)
    summary = summary_rows(runs)
    per_run = run_rows(runs)
    (output / "compare.md").write_text(
        f"# {arguments.title}\n\n{markdown(SUMMARY_COLUMNS, summary)}\n\n## Runs\n\n{markdown(RUN_COLUMNS, per_run)}\n"
    )
    with open(output / "compare.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(asdict(runs[0])))
        writer.writeheader()
        writer.writerows(asdict(run) for run in runs)
    with open(output / "compare_summary.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(SUMMARY_COLUMNS)
        writer.writerows(summary)
    figure(runs, arguments.title).savefig(output / "compare.png", dpi=130)
    console = Console(width=None if sys.stdout.isatty() else 200)
    shown = Table(title=arguments.title)
    for column in SUMMARY_COLUMNS:
        shown.add_column(column, justify="left" if column in ("model", "dataset") else "right")
    for row in summary:
        shown.add_row(*row)
    console.print(shown)
    console.print(f"{len(runs)} runs; wrote {output}/compare.md, compare.csv, compare_summary.csv, compare.png")
