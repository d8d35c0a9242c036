"""One trial: its `lit-vir fit` argv, its run folder(s), the callback that reports to Optuna, and how its end is told.

A trial is an ordinary `lit-vir fit` run in `<sweep>/runs/<cell>/t<NNN>-s<seed>/` (config.yaml, environment.yaml,
checkpoints, TensorBoard events), so `lit-vir compare` reads a sweep unchanged; `trial.yaml` beside them tags it
with the study, the trial number, its parameters and how it ended (complete, pruned, failed with the reason,
interrupted and resumed). The folder is named after the trial's *first* number: a trial run again after an
interruption or a crash is a new Optuna trial with the same parameters that resumes from the folder's
`last.ckpt`, so its global step continues.

How a trial ends → what happens:
- complete: its value is the best `metric` over its validations (the mean over seeds, if several);
- pruned (Optuna's pruner): PRUNED, said in trial.yaml;
- a configuration error (found before training) or a deterministic stop (non-finite loss, missing data): FAIL
  with the message, not retried;
- interrupted (SIGTERM, Ctrl-C, a SLURM preemption or time-out): FAIL marked `interrupted`, and the same
  parameters are enqueued again at once: the next worker resumes it (not counted as a crash);
- any other error, or a worker that died (no heartbeat): FAIL marked `crashed`, enqueued again up to
  `launcher.max_retries` times.
"""

from __future__ import annotations

import datetime
import os
import socket
import statistics
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState
from optuna_integration import PyTorchLightningPruningCallback

from lit_vir.checks import ConfigError
from lit_vir.data.files import CorruptDatasetFile, DatasetFilesMissing
from lit_vir.sweep.spec import as_argv
from lit_vir.sweep.studies import Plan
from lit_vir.sweep.validate import base_argv, check_builds, parse_run, run_parser
from lit_vir.training.checkpoints import CheckpointError
from lit_vir.training.guards import NonFiniteLossError
from lit_vir.training.provenance import now

__all__ = ["Fit", "TrialReporter", "attempt_chains", "requeue", "retry_failed", "run_trial"]

# `lit_vir.cli.run`: runs `lit-vir fit` in this process with extra callbacks. Passed down by the command, so
# this layer does not import the CLI above it.
Fit = Callable[[Sequence[str], Sequence[Callback]], Any]
STOPS = (NonFiniteLossError, DatasetFilesMissing, CorruptDatasetFile, CheckpointError)  # the same again next time


class TrialReporter(PyTorchLightningPruningCallback):
    """optuna-integration's pruning callback, which also keeps the best value of the metric over validations
    (the trial's value) and reports only when the trial's pruner looks at epochs.

    The best value is saved in every checkpoint and restored with it, so a trial resumed from `last.ckpt` keeps the
    validations before the interruption: its value is the best over the whole run, and a run whose budget was
    already spent when it was interrupted (it resumes, trains no further and validates no more) keeps its value."""

    def __init__(self, trial: optuna.Trial, monitor: str, direction: str, report: bool) -> None:
        super().__init__(trial, monitor)
        self.maximize = direction == "maximize"
        self.report = report
        self.best: float | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None:
            self.keep(float(value))
        if self.report:
            super().on_validation_end(trainer, pl_module)

    def keep(self, value: float) -> None:
        if self.best is None or (value > self.best if self.maximize else value < self.best):
            self.best = value

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("monitor") == self.monitor and state_dict.get("best") is not None:
            self.keep(float(state_dict["best"]))

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        """A checkpoint written before the reporter kept its state: the best score of a ModelCheckpoint that
        monitored the same metric in the same direction (Lightning calls this before `load_state_dict`)."""
        mode = f"'mode': '{'max' if self.maximize else 'min'}'"  # in the state's key, ModelCheckpoint{...}
        for key, state in checkpoint.get("callbacks", {}).items():
            if not ("ModelCheckpoint{" in key and mode in key and state.get("monitor") == self.monitor):
                continue
            if state.get("best_model_score") is not None:
                self.keep(float(state["best_model_score"]))


@dataclass
class Ending:
    state: TrialState
    outcome: str  # complete, pruned, failed, interrupted, crashed
    value: float | None = None
    reason: str = ""
    seeds: dict[str, float] = field(default_factory=dict)
    exit_code: int | None = None  # submitit's preemption exit (-1), raised again once the trial is requeued


def write_yaml(path: Path, content: dict) -> None:
    """Write atomically (a temporary file renamed into place): a kill leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(yaml.safe_dump(content, sort_keys=False, allow_unicode=True))
    os.replace(temporary, path)


def root_number(trial: FrozenTrial | optuna.Trial) -> int:
    attrs = trial.user_attrs
    return attrs.get("root_trial", trial.number)


def suggest(plan: Plan, trial: optuna.Trial) -> dict[str, Any]:
    """The trial's parameters: its grid coordinates (fixed when enqueued) and its draws from the search space
    (fixed too when it is a trial run again)."""
    params: dict[str, Any] = {}
    if not plan.searching:
        for name, choices in plan.grid_choices().items():
            params[name] = trial.suggest_categorical(name, choices)
        return params
    for key, param in plan.space.items():
        name = plan.names[key]
        if param.choices is not None:
            params[name] = trial.suggest_categorical(name, param.choices)
        elif param.type == "int":
            step = int(param.step) if param.step else 1
            params[name] = trial.suggest_int(name, int(param.low), int(param.high), step=step, log=param.log)
        else:
            params[name] = trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)
    return params


ATTEMPT_ENDING = ("state", "outcome", "reason", "traceback", "ended")  # how one attempt ended, kept in its entry


@dataclass
class TrialRun:
    """The runs of one trial: its cell's argv, its parameters, and one `lit-vir fit` per seed."""

    plan: Plan
    trial: optuna.Trial
    params: dict[str, Any]
    worker: dict[str, Any]
    slurm: bool

    @property
    def cell(self):
        return self.plan.cells[self.trial.user_attrs["cell"]]

    def seeds(self) -> list[int | None]:
        if not self.plan.searching:
            return [self.params.get("seed")]
        return list(self.plan.spec.grid.seeds) or [None]

    def folder(self, seed: int | None) -> Path:
        version = f"t{root_number(self.trial):03d}" + (f"-s{seed}" if seed is not None else "")
        return self.plan.spec.folder / "runs" / self.cell.name / version

    def config_argv(self, seed: int | None) -> list[str]:
        """Base pieces, the cell, the searched values, the seed: what `fit` parses (without run-only options)."""
        argv = base_argv(self.plan.spec) + list(self.cell.argv)
        keys = self.plan.param_argv_keys()
        argv += as_argv({keys[name]: value for name, value in self.params.items() if name in keys})
        if seed is not None:
            argv += ["--seed_everything", str(seed)]
        return argv

    def fit_argv(self, seed: int | None, config_argv: list[str], draws_reservoir: bool) -> list[str]:
        folder = self.folder(seed)
        argv = ["fit", *config_argv]
        if seed is not None and draws_reservoir:  # each seed draws a new reservoir, as each seed draws new weights
            argv += ["--model.init_args.backbone.init_args.seed", str(seed)]
        argv += [
            "--trainer.logger.init_args.save_dir",
            str(folder.parent.parent),
            "--trainer.logger.init_args.name",
            folder.parent.name,
            "--trainer.logger.init_args.version",
            folder.name,
        ]
        if self.worker.get("kind") != "inline":
            argv += ["--trainer.enable_progress_bar", "false"]  # a worker's log is a file, not a terminal
        if self.slurm:  # submitit requeues on preemption and time-out; Lightning's own requeue would clash
            argv += [
                "--trainer.plugins+=lightning.pytorch.plugins.environments.SLURMEnvironment",
                "--trainer.plugins.init_args.auto_requeue",
                "false",
            ]
        last = folder / "checkpoints" / "last.ckpt"
        if last.is_file():
            argv += ["--ckpt_path", str(last)]
        return argv

    def record(self, seed: int | None, **fields: Any) -> None:
        path = self.folder(seed) / "trial.yaml"
        previous = yaml.safe_load(path.read_text()) if path.is_file() else {}
        history = previous.get("attempts", [])
        if fields.get("state") == "RUNNING":  # a new attempt: the last one's ending goes into its own entry
            if history:
                ending = {key: previous[key] for key in ATTEMPT_ENDING if key in previous}
                if ending.get("state") == "RUNNING":  # it never said how it ended: its worker was killed or lost
                    ending = {"state": "LOST", "outcome": "lost", "reason": "its worker stopped without a record"}
                history[-1] = {**history[-1], **ending}
            previous = {key: value for key, value in previous.items() if key not in ATTEMPT_ENDING}
            history = [*history, {"trial": self.trial.number, "started": now(), **self.worker}]
        content = {
            "sweep": self.plan.spec.name,
            "study": self.trial.study.study_name,
            "trial": self.trial.number,
            "root_trial": root_number(self.trial),
            "cell": self.cell.name,
            "params": self.params,
            "seed": seed,
            **{key: value for key, value in previous.items() if key not in ("attempts",)},
            **fields,
            "attempts": history,
        }
        write_yaml(path, content)

    def finished_value(self, seed: int | None) -> float | None:
        """A seed finished by an earlier attempt of this trial keeps its value (it is not trained again)."""
        path = self.folder(seed) / "trial.yaml"
        if not path.is_file():
            return None
        content = yaml.safe_load(path.read_text())
        return content.get("value") if content.get("state") == "COMPLETE" else None


def run_trial(plan: Plan, trial: optuna.Trial, fit: Fit, worker: dict[str, Any], slurm: bool = False) -> Ending:
    """Run the trial's seeds, tell Optuna how it ended, and say so in each run folder."""
    study = trial.study
    try:
        params = suggest(plan, trial)
    except ValueError as error:  # a stored trial whose parameters no longer fit the spec's distributions
        return tell(study, trial, Ending(TrialState.FAIL, "failed", reason=f"its parameters do not fit: {error}"), plan)
    run = TrialRun(plan, trial, params, worker, slurm)
    pruner_by_seed = plan.spec.pruner.kind == "wilcoxon"
    values: dict[str, float] = {}
    for index, seed in enumerate(run.seeds()):
        earlier = run.finished_value(seed)
        if earlier is not None:
            values[str(seed)] = earlier
            continue
        ending = run_seed(run, seed, fit, report_epochs=index == 0 and not pruner_by_seed)
        if ending is not None:
            ending.seeds = values
            return tell(study, trial, ending, plan)
        values[str(seed)] = run.finished_value(seed)
        if pruner_by_seed:
            trial.report(values[str(seed)], step=index)
            if trial.should_prune():
                for other in run.seeds()[index + 1 :]:
                    run.record(other, state="PRUNED", outcome="pruned", reason="pruned before this seed ran")
                return tell(study, trial, Ending(TrialState.PRUNED, "pruned", seeds=values), plan)
    value = statistics.fmean(values.values())
    return tell(study, trial, Ending(TrialState.COMPLETE, "complete", value=value, seeds=values), plan)


def run_seed(run: TrialRun, seed: int | None, fit: Fit, report_epochs: bool) -> Ending | None:
    """One `lit-vir fit` of the trial; None when it completed (its value is then in its trial.yaml)."""
    parser = run_parser()
    config_argv = run.config_argv(seed)
    try:
        config = parse_run(parser, config_argv, f"trial {run.trial.number}")
        check_builds(parser, config, f"trial {run.trial.number}")
    except ConfigError as error:
        run.record(seed, state="FAIL", outcome="failed", reason=f"invalid configuration: {error}")
        return Ending(TrialState.FAIL, "failed", reason=f"invalid configuration: {error}")
    draws_reservoir = "seed" in (config.model.init_args.backbone.get("init_args") or {})
    argv = run.fit_argv(seed, config_argv, draws_reservoir)
    if "--ckpt_path" not in argv:
        clear_partial_run(run.folder(seed))
    spec = run.plan.spec
    reporter = TrialReporter(run.trial, spec.metric, spec.direction, report=report_epochs)
    run.record(seed, state="RUNNING", outcome="running", resumed_from_checkpoint="--ckpt_path" in argv)
    cpu = CpuClock(run, seed)
    try:
        fit(argv, [reporter])
    except optuna.TrialPruned as pruned:
        run.record(
            seed, state="PRUNED", outcome="pruned", reason=str(pruned), value=reporter.best, ended=now(), **cpu()
        )
        return Ending(TrialState.PRUNED, "pruned", reason=str(pruned))
    except (SystemExit, KeyboardInterrupt) as error:
        # SIGTERM (Lightning's SIGTERMException), Ctrl-C (Lightning exits with 1), submitit's preemption (-1); a
        # configuration error found inside the fit exits with 2 (the check above makes that rare)
        code = error.code if isinstance(error, SystemExit) else 1
        if code == 2 and not isinstance(error, SIGTERMException):
            reason = "invalid configuration (the worker's log has the message)"
            run.record(seed, state="FAIL", outcome="failed", reason=reason, ended=now())
            return Ending(TrialState.FAIL, "failed", reason=reason)
        reason = f"interrupted ({type(error).__name__}); resumes from its last checkpoint"
        run.record(seed, state="INTERRUPTED", outcome="interrupted", reason=reason, ended=now(), **cpu())
        return Ending(TrialState.FAIL, "interrupted", reason=reason, exit_code=-1 if code == -1 else None)
    except STOPS as error:
        run.record(seed, state="FAIL", outcome="failed", reason=str(error), ended=now(), **cpu())
        return Ending(TrialState.FAIL, "failed", reason=str(error))
    except Exception as error:  # noqa: BLE001 (anything else is a crash: recorded with its traceback, retried)
        reason = f"{type(error).__name__}: {error}"
        trace = traceback.format_exc()
        run.record(seed, state="FAIL", outcome="crashed", reason=reason, traceback=trace, ended=now(), **cpu())
        return Ending(TrialState.FAIL, "crashed", reason=reason)
    if reporter.best is None:
        reason = f"the run logged no {spec.metric} (no validation ran?)"
        run.record(seed, state="FAIL", outcome="failed", reason=reason, ended=now())
        return Ending(TrialState.FAIL, "failed", reason=reason)
    run.record(seed, state="COMPLETE", outcome="complete", value=reporter.best, reason="", ended=now(), **cpu())
    return None


class CpuClock:
    """The CPU time this process spends on a run (every thread), added to what earlier attempts of the run spent:
    what a search costs, whatever else the machine ran (wall time depends on that)."""

    def __init__(self, run: TrialRun, seed: int | None) -> None:
        path = run.folder(seed) / "trial.yaml"
        earlier = yaml.safe_load(path.read_text()) if path.is_file() else {}
        self.before = float(earlier.get("cpu_s") or 0.0)
        self.started = time.process_time()

    def __call__(self) -> dict[str, float]:
        return {"cpu_s": round(self.before + time.process_time() - self.started, 3)}


def clear_partial_run(folder: Path) -> None:
    """A trial that starts without a checkpoint starts clean: what an attempt that died before its first
    checkpoint left (events, a config) is moved aside, so the run's logged series are not doubled."""
    if not folder.is_dir():
        return
    leftovers = [
        path for path in folder.iterdir() if path.name not in ("trial.yaml",) and not path.name.startswith(".")
    ]
    if not leftovers:
        return
    aside = folder / f".attempt-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    aside.mkdir()
    for path in leftovers:
        path.rename(aside / path.name)


def tell(study: optuna.Study, trial: optuna.Trial, ending: Ending, plan: Plan) -> Ending:
    """Tell Optuna, then enqueue the same parameters again if the trial is to resume or be retried."""
    trial.set_user_attr("outcome", ending.outcome)
    if ending.reason:
        trial.set_user_attr("reason", ending.reason[:2000])
    if ending.seeds:
        trial.set_user_attr("seed_values", ending.seeds)
    try:
        if ending.state == TrialState.COMPLETE:
            frozen = study.tell(trial, ending.value)
        else:
            frozen = study.tell(trial, state=ending.state)
    except UpdateFinishedTrialError:
        return ending  # failed for silence by another process while this one stalled; that one enqueued it again
    if ending.outcome in ("interrupted", "crashed"):
        requeue(study, frozen, plan.spec.launcher.max_retries, crashed=ending.outcome == "crashed")
    return ending


def carried_attrs(frozen: FrozenTrial) -> dict[str, Any]:
    """What the next attempt of a trial inherits from its last one: all but how that attempt ended."""
    return {key: value for key, value in frozen.user_attrs.items() if key not in ("outcome", "reason", "seed_values")}


def requeue(study: optuna.Study, frozen: FrozenTrial, max_retries: int, crashed: bool) -> bool:
    """Enqueue a failed trial's parameters again (its run folder, named after its first number, is resumed); a
    crash counts against `max_retries`, an interruption does not. False when it is given up."""
    attrs = carried_attrs(frozen)
    crashes = attrs.get("crashes", 0) + int(crashed)
    if crashes > max_retries:
        return False
    attrs.update(root_trial=attrs.get("root_trial", frozen.number), crashes=crashes, resumes=frozen.number)
    study.enqueue_trial(frozen.params, user_attrs=attrs)
    return True


def attempt_chains(study: optuna.Study) -> dict[int, list[FrozenTrial]]:
    """The study's trials grouped by their first number: each trial's attempts (a trial run again is a new Optuna
    trial with `root_trial` set), in the order the study holds them."""
    chains: dict[int, list[FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False):
        chains.setdefault(root_number(trial), []).append(trial)
    return chains


def retry_failed(study: optuna.Study) -> list[int]:
    """Enqueue again every trial whose latest attempt failed for good (a configuration error, a deterministic stop,
    crashes beyond `max_retries`), once the cause is fixed: `lit-vir sweep run --launcher.retry_failed true`. The retry
    starts its crash count afresh and resumes its run folder from `last.ckpt` where there is one. The trials'
    first numbers, in order."""
    retried = []
    for root, attempts in sorted(attempt_chains(study).items()):
        latest = max(attempts, key=lambda trial: trial.number)
        if latest.state != TrialState.FAIL:  # an interrupted or crashed trial with retries left is already WAITING
            continue
        attrs = carried_attrs(latest)
        attrs.update(root_trial=root, crashes=0, resumes=latest.number)
        study.enqueue_trial(latest.params or latest.system_attrs.get("fixed_params", {}), user_attrs=attrs)
        retried.append(root)
    return retried


def worker_record() -> dict[str, Any]:
    """Where a trial ran, for its trial.yaml."""
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"host": socket.gethostname(), "pid": os.getpid(), "cores": affinity}
