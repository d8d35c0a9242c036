"""`lit-vir sweep status`: every trial of a sweep in one table — state, parameters, value, run folder, duration.

A trial run again (interrupted, or crashed and retried) is one row: its attempts are Optuna trials with the same
parameters and the same run folder, shown as the latest attempt's state with the count of attempts.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.table import Table

from lit_vir.sweep.studies import Plan
from lit_vir.sweep.trial import attempt_chains

__all__ = ["TrialRow", "status_table", "trial_rows"]


@dataclass
class TrialRow:
    """One trial of the sweep as a person reads it (attempts folded together)."""

    study: str
    cell: str
    number: int  # the first attempt's number, which names its run folder
    attempts: int
    state: str  # complete, pruned, running, waiting, failed, crashed, interrupted, gave up
    reason: str
    params: dict
    value: float | None
    seconds: float
    folders: list[str]


def duration(trial: FrozenTrial) -> float:
    if trial.datetime_start is None:
        return 0.0
    end = trial.datetime_complete or datetime.datetime.now()
    return (end - trial.datetime_start).total_seconds()


def state_of(latest: FrozenTrial, max_retries: int) -> str:
    if latest.state == TrialState.COMPLETE:
        return "complete"
    if latest.state == TrialState.PRUNED:
        return "pruned"
    if latest.state == TrialState.RUNNING:
        return "running"
    if latest.state == TrialState.WAITING:
        return "waiting"
    outcome = latest.user_attrs.get("outcome", "crashed")  # failed for silence: the worker died
    if outcome == "crashed" and latest.user_attrs.get("crashes", 0) >= max_retries:
        return "gave up"
    return outcome


def trial_rows(plan: Plan, studies: list[optuna.Study]) -> list[TrialRow]:
    rows = []
    for study in studies:
        for root, attempts in sorted(attempt_chains(study).items()):
            latest = max(attempts, key=lambda trial: trial.number)
            cell = latest.user_attrs.get("cell", "")
            reason = latest.user_attrs.get("reason", "")
            if latest.state == TrialState.FAIL and "outcome" not in latest.user_attrs:
                reason = "its worker stopped sending heartbeats (killed, out of memory?)"
            folders = sorted(
                str(path)
                for path in (plan.spec.folder / "runs" / cell).glob(f"t{root:03d}*")
                if (path / "trial.yaml").is_file()
            )
            rows.append(
                TrialRow(
                    study=study.study_name,
                    cell=cell,
                    number=root,
                    attempts=len(attempts),
                    state=state_of(latest, plan.spec.launcher.max_retries),
                    reason=reason,
                    params=dict(latest.params or latest.system_attrs.get("fixed_params", {})),
                    value=latest.value if latest.state == TrialState.COMPLETE else None,
                    seconds=sum(duration(trial) for trial in attempts),
                    folders=folders,
                )
            )
    return rows


STYLES = {"complete": "green", "pruned": "yellow", "running": "cyan", "waiting": "dim", "interrupted": "magenta"}


def status_table(plan: Plan, rows: list[TrialRow]) -> Table:
    spec = plan.spec
    table = Table(title=f"sweep {spec.name} — {spec.metric} ({spec.direction})", title_justify="left")
    for column in ("cell", "trial", "state", "parameters", spec.metric, "run folder", "time"):
        table.add_column(column, overflow="fold")
    for row in rows:
        state = row.state + (f" ({row.attempts} attempts)" if row.attempts > 1 else "")
        if row.reason and row.state not in ("complete", "running"):
            state += f": {row.reason}"
        style = STYLES.get(row.state, "red")
        folders = ", ".join(str(Path(folder).relative_to(spec.folder)) for folder in row.folders) or "–"
        table.add_row(
            row.cell,
            str(row.number),
            f"[{style}]{state}[/]",
            plan.describe(row.params),
            "–" if row.value is None else f"{row.value:.4f}",
            folders,
            str(datetime.timedelta(seconds=round(row.seconds))),
        )
    return table
