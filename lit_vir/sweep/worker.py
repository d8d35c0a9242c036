"""A trial worker: one process that takes WAITING trials and runs them until none is left.

Launched by submitit (a local process, or a SLURM array task) or called in the driver's process (`inline`). It
pins itself to its share of the machine (CPU affinity and torch threads, or one GPU), keeps each trial's
heartbeat while it runs, and stops cleanly on SIGTERM: Lightning saves a checkpoint, the trial is enqueued again
to resume, and the worker takes no other trial. A local worker also stops this way when its driver has died
(SIGKILL included), so a killed driver leaves no orphan training behind and a rerun resumes everything.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import submitit
import torch
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from lit_vir.sweep.spec import SweepSpec, read_spec
from lit_vir.sweep.storage import open_storage, quiet_optuna
from lit_vir.sweep.studies import Plan
from lit_vir.sweep.trial import Fit, requeue, run_trial, worker_record

__all__ = ["Heartbeat", "Worker", "on_stale", "recover"]


def on_stale(max_retries: int, study: optuna.Study, frozen: FrozenTrial) -> None:
    """A trial whose worker went silent (killed, out of memory, a lost node) was failed by Optuna: run it again,
    as a crash, from its last checkpoint."""
    requeue(study, frozen, max_retries, crashed=True)


def storage_of(spec: SweepSpec) -> RDBStorage:
    return open_storage(spec, on_stale=functools.partial(on_stale, spec.launcher.max_retries))


def recover(studies: list[optuna.Study]) -> None:
    """Fail the trials whose heartbeat stopped (each is then enqueued again by `on_stale`, once, whoever sees it)."""
    for study in studies:
        fail_stale_trials(study)


class Heartbeat(threading.Thread):
    """Record the trial's heartbeat every `interval` s while it runs. Stop the trial (SIGTERM to this process,
    which Lightning turns into a checkpoint) if the driver that launched this local worker is gone, or if the
    trial was taken from this worker (failed for silence by another process while this one was stalled)."""

    def __init__(self, storage: RDBStorage, trial_id: int, interval: float, driver_pid: int | None) -> None:
        super().__init__(daemon=True, name="lit_vir-heartbeat")
        self.storage, self.trial_id, self.interval, self.driver_pid = storage, trial_id, interval, driver_pid
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.storage.record_heartbeat(self.trial_id)
            driver_gone = self.driver_pid is not None and not alive(self.driver_pid)
            taken = self.storage.get_trial(self.trial_id).state != TrialState.RUNNING
            if driver_gone or taken:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    def __enter__(self) -> Heartbeat:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        self.join()


def alive(pid: int) -> bool:
    """Whether the process runs: it exists and is not a zombie (killed, not yet reaped by its parent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True  # no /proc: existing is all that can be told
    return state not in ("Z", "X")


@dataclass
class Worker(submitit.helpers.Checkpointable):
    """Run trials of the sweep saved at `spec_file` until none is waiting (or `max_trials` have run).

    `fit` is `lit_vir.cli.run`, handed down by the command. `cores`/`gpu` pin the process; `driver_pid` makes a
    local worker stop with its driver."""

    spec_file: str
    fit: Fit
    kind: str = "inline"
    cores: list[int] | None = None
    gpu: int | None = None
    max_trials: int | None = None
    driver_pid: int | None = None

    def __call__(self) -> int:
        quiet_optuna()
        spec = read_spec(self.spec_file)
        self.pin(spec.resources.threads)
        plan = Plan.of(spec)
        storage = storage_of(spec)
        stop = threading.Event()
        previous = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: stop.set())  # Lightning adds its own during a fit
        record = {**worker_record(), "kind": self.kind}
        done = 0
        try:
            while not stop.is_set() and (self.max_trials is None or done < self.max_trials):
                recover(plan.studies(storage))
                taken = plan.take(storage)
                if taken is None:
                    break
                trial, trial_id = taken
                with Heartbeat(storage, trial_id, spec.launcher.heartbeat_s, self.driver_pid):
                    ending = run_trial(plan, trial, self.fit, record, slurm=self.kind == "slurm")
                done += 1
                if ending.exit_code is not None:
                    raise SystemExit(ending.exit_code)  # submitit's preemption exit: the job is requeued
                if ending.outcome == "interrupted":
                    break
        finally:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, previous)
        return done

    def pin(self, threads: int) -> None:
        """This worker's cores and GPU: affinity and torch threads (recorded by every run's environment.yaml)."""
        if self.cores and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, self.cores)
        if self.kind != "inline":
            torch.set_num_threads(threads)
        if self.gpu is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(self.gpu)
