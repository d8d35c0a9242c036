"""`lit-vir sweep report`: what a search found, as a reservoir user expects to see it.

Per study (a grid cell of a search, or the whole grid): the best trials, Optuna's parameter importances (fANOVA),
and figures as PNG files — the optimisation history; each parameter against the metric, coloured by the most
important other parameter; a scatter matrix of every pair of parameters coloured by the metric (the layout of
reservoirpy's `plot_hyperopt_report`) — beside a Markdown summary (`report.md`), plus one TensorBoard HPARAMS
session per trial (`report/tensorboard`), so trials can be sorted and filtered in TensorBoard too.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path

import numpy as np
import optuna
import yaml
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.table import Table
from torch.utils.tensorboard import SummaryWriter

from lit_vir.sweep.spec import SweepSpec, absolute, short
from lit_vir.sweep.status import trial_rows
from lit_vir.sweep.studies import Plan, primitive
from lit_vir.sweep.worker import storage_of

__all__ = ["importances", "write_report"]


def numeric_params(trials: list[FrozenTrial]) -> list[str]:
    """Parameters with numeric values that vary across the trials (what can be plotted on an axis)."""
    names = sorted({name for trial in trials for name in trial.params})
    numeric = []
    for name in names:
        values = [trial.params.get(name) for trial in trials]
        numbers = all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values)
        if numbers and len(set(values)) > 1:
            numeric.append(name)
    return numeric


def importances(study: optuna.Study) -> dict[str, float]:
    """Optuna's fANOVA importances of the varying parameters over complete trials ({} with fewer than 2)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    names = {name for trial in complete for name in trial.params}
    varying = [name for name in names if len({trial.params.get(name) for trial in complete}) > 1]
    if len(complete) < 2 or not varying:
        return {}
    return optuna.importance.get_param_importances(study, params=sorted(varying))


def log_names(plan: Plan) -> set[str]:
    """The parameters drawn log-uniformly: drawn on log axes."""
    return {plan.names[key] for key, param in plan.space.items() if param.log}


def history_figure(study: optuna.Study, metric: str, maximize: bool) -> Figure:
    """Each complete trial's value in order, and the best so far."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    figure = Figure(figsize=(6.4, 4))
    axes = figure.subplots()
    numbers = [trial.number for trial in complete]
    values = [trial.value for trial in complete]
    best = np.maximum.accumulate(values) if maximize else np.minimum.accumulate(values)
    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    axes.scatter(numbers, values, s=14, label="trial")
    if pruned:
        reported = [trial for trial in pruned if trial.intermediate_values]
        pruned_values = [trial.intermediate_values[max(trial.intermediate_values)] for trial in reported]
        pruned_numbers = [trial.number for trial in reported]
        axes.scatter(pruned_numbers, pruned_values, s=14, marker="x", color="grey", label="pruned (last report)")
    axes.step(numbers, best, where="post", color="C3", label="best so far")
    axes.set_xlabel("trial")
    axes.set_ylabel(metric)
    axes.set_title(f"{study.study_name}: optimisation history", fontsize=9)
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def parameters_figure(
    trials: list[FrozenTrial], names: list[str], colour_by: str | None, metric: str, logs: set[str]
) -> Figure:
    """Each parameter against the metric, coloured by a second parameter (the most important other one)."""
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.4 * rows))
    panels = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    values = [trial.value for trial in trials]
    for axes, name in zip(panels, names, strict=False):
        xs = [trial.params[name] for trial in trials]
        colour_name = colour_by if colour_by and colour_by != name else next((n for n in names if n != name), None)
        colours = [trial.params[colour_name] for trial in trials] if colour_name else None
        points = axes.scatter(xs, values, c=colours, s=16, cmap="viridis" if colours else None)
        if name in logs:
            axes.set_xscale("log")
        if colour_name:
            figure.colorbar(points, ax=axes, label=colour_name)
        axes.set_xlabel(name)
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
    for axes in panels[len(names) :]:
        axes.set_visible(False)
    figure.tight_layout()
    return figure


def scatter_matrix(trials: list[FrozenTrial], names: list[str], metric: str, logs: set[str]) -> Figure:
    """Every pair of parameters, each trial a point coloured by the metric; the diagonal: parameter vs metric."""
    size = len(names)
    figure = Figure(figsize=(2.6 * size + 1, 2.4 * size))
    panels = np.array(figure.subplots(size, size, squeeze=False))
    values = np.array([trial.value for trial in trials])
    points = None
    for row, y_name in enumerate(names):
        for column, x_name in enumerate(names):
            axes = panels[row, column]
            xs = [trial.params[x_name] for trial in trials]
            if row == column:
                axes.scatter(xs, values, s=10, color="C0")
                axes.set_ylabel(metric if column == 0 else "", fontsize=7)
            else:
                ys = [trial.params[y_name] for trial in trials]
                points = axes.scatter(xs, ys, c=values, s=10, cmap="viridis")
                if y_name in logs:
                    axes.set_yscale("log")
                if column == 0:
                    axes.set_ylabel(y_name, fontsize=7)
            if x_name in logs:
                axes.set_xscale("log")
            if row == size - 1:
                axes.set_xlabel(x_name, fontsize=7)
            axes.tick_params(labelsize=6)
    if points is not None:
        figure.colorbar(points, ax=panels.ravel().tolist(), label=metric)
    return figure


def write_hparams(folder: Path, study: optuna.Study, plan: Plan) -> None:
    """One TensorBoard HPARAMS session per finished trial: its parameters against its value and state."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        params = {name: primitive(value) for name, value in trial.params.items()}
        params["state"] = trial.state.name.lower()
        with SummaryWriter(folder / study.study_name / f"trial_{trial.number:03d}") as writer:
            value = trial.value if trial.state == TrialState.COMPLETE else float("nan")
            writer.add_hparams(params, {f"hparam/{plan.spec.metric}": value}, run_name=".")


def spent(runs: Path) -> tuple[float, float, int]:
    """CPU seconds and wall seconds the sweep's runs took (each run's trial.yaml; wall from its attempts' starts to
    its end), and how many runs."""
    cpu = wall = 0.0
    folders = list(runs.glob("*/*/trial.yaml"))
    for path in folders:
        record = yaml.safe_load(path.read_text())
        cpu += float(record.get("cpu_s") or 0.0)
        if record.get("ended") and record.get("attempts"):
            start = datetime.datetime.fromisoformat(record["attempts"][0]["started"])
            wall += (datetime.datetime.fromisoformat(record["ended"]) - start).total_seconds()
    return cpu, wall, len(folders)


def write_report(spec: SweepSpec, console: Console, top: int = 10) -> Path:
    """Write `<sweep>/report/` and print the best trials; returns the report's folder."""
    spec = absolute(spec)
    plan = Plan.of(spec)
    studies = plan.studies(storage_of(spec))
    folder = spec.folder / "report"
    folder.mkdir(parents=True, exist_ok=True)
    maximize = spec.direction == "maximize"
    rows = {(row.study, row.number): row for row in trial_rows(plan, studies)}
    lines = [f"# Sweep {spec.name}", "", f"Metric: best `{spec.metric}` over a run's validations ({spec.direction})."]
    for study in studies:
        complete = [trial for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        counts = {state: len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
        lines += ["", f"## {study.study_name}", ""]
        lines.append(
            f"{counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} pruned, {counts[TrialState.FAIL]} "
            f"failed attempts, {counts[TrialState.RUNNING]} running, {counts[TrialState.WAITING]} waiting."
        )
        if not complete:
            continue
        best = sorted(complete, key=lambda trial: trial.value, reverse=maximize)[:top]
        names = sorted({name for trial in complete for name in trial.params})
        table = Table(title=f"{study.study_name}: best {len(best)} of {len(complete)}", title_justify="left")
        for column in ("trial", spec.metric, *names, "run folder"):
            table.add_column(column)
        lines += ["", "| trial | " + spec.metric + " | " + " | ".join(names) + " | run folder |"]
        lines.append("|---" * (len(names) + 3) + "|")
        for trial in best:
            root = trial.user_attrs.get("root_trial", trial.number)
            row = rows.get((study.study_name, root))
            where = ", ".join(str(Path(path).relative_to(spec.folder)) for path in row.folders) if row else "–"
            cells = [short(trial.params.get(name)) if name in trial.params else "–" for name in names]
            table.add_row(str(trial.number), f"{trial.value:.4f}", *cells, where)
            lines.append(f"| {trial.number} | {trial.value:.4f} | " + " | ".join(cells) + f" | {where} |")
        console.print(table)
        weights = importances(study)
        if weights:
            lines += ["", "Parameter importances (Optuna, fANOVA over complete trials):", ""]
            lines += [f"- {name}: {weight:.3f}" for name, weight in weights.items()]
        stem = study.study_name.replace("/", "_")
        figures = {f"{stem}-history.png": history_figure(study, spec.metric, maximize)}
        numeric = numeric_params(complete)
        if numeric:
            colour_by = next(iter(weights), None)
            figures[f"{stem}-parameters.png"] = parameters_figure(
                complete, numeric, colour_by, spec.metric, log_names(plan)
            )
        if len(numeric) >= 2:
            figures[f"{stem}-scatter-matrix.png"] = scatter_matrix(complete, numeric, spec.metric, log_names(plan))
        lines.append("")
        for name, figure in figures.items():
            figure.savefig(folder / name, dpi=110)
            lines.append(f"![{name}]({name})")
        write_hparams(folder / "tensorboard", study, plan)
    cpu, wall, runs = spent(spec.folder / "runs")
    lines += [
        "",
        f"Spent: {cpu / 3600:.2f} CPU-hours of training processes over {runs} run folders (CPU time of every attempt "
        f"that ended with a record, from each folder's trial.yaml), {wall / 3600:.2f} hours of trials' wall time.",
        "",
        f"TensorBoard: `tensorboard --logdir {folder / 'tensorboard'}` (HPARAMS tab).",
    ]
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    console.print(f"wrote {folder}/report.md and its figures")
    return folder
