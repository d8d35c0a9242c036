"""The driver of `lit-vir sweep run`: check the spec, create the studies, start workers (submitit), follow them.

Running the same command again continues the sweep: finished trials stay finished, an interrupted or crashed
trial is enqueued again and resumes from its checkpoint, slots never taken are taken. On SIGTERM or Ctrl-C the
driver stops its local workers (each saves a checkpoint and enqueues its trial again) and exits; if it is killed
outright, its local workers notice and do the same.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import submitit
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lit_vir.checks import ConfigError
from lit_vir.sweep.spec import SweepSpec, absolute, as_dict, write_spec
from lit_vir.sweep.storage import redacted, storage_url
from lit_vir.sweep.studies import Plan
from lit_vir.sweep.trial import Fit, retry_failed
from lit_vir.sweep.validate import validate
from lit_vir.sweep.worker import Worker, recover, storage_of

__all__ = ["run_sweep"]

FOREVER_MIN = 60 * 24 * 365  # a local worker has no time limit (submitit's default is 2 minutes)
IDENTITY = ("base", "overrides", "grid", "search", "metric", "direction")  # what a rerun may not change


def run_sweep(spec: SweepSpec, fit: Fit, console: Console) -> int:
    """Run (or continue) the sweep; the number of trials that are still not finished when it returns."""
    spec = absolute(spec)
    validate(spec)
    url = storage_url(spec)  # refuses a URL with a password before anything is written
    if spec.launcher.kind == "local":
        local_slots(spec, spec.launcher.workers)  # enough cores and GPUs for the workers, or a message now
    plan = Plan.of(spec)
    spec_file = spec.folder / "sweep.yaml"
    keep_identity(spec, spec_file)
    write_spec(spec, spec_file)
    console.print(f"sweep [bold]{spec.name}[/]: {spec.folder} · storage {redacted(url)}")
    storage = storage_of(spec)
    studies = plan.prepare(storage)
    if spec.launcher.retry_failed:
        for study in studies:
            retried = retry_failed(study)
            if retried:
                console.print(f"{study.study_name}: failed trials {', '.join(map(str, retried))} enqueued again")
    while True:
        recover(studies)
        counts = count(studies)
        if counts["WAITING"]:
            launch(spec, plan, studies, spec_file, fit, console, counts["WAITING"])
            if spec.launcher.kind == "slurm" and not spec.launcher.wait:
                break
        elif counts["RUNNING"] and not (spec.launcher.kind == "slurm" and not spec.launcher.wait):
            # trials of another driver, or of a worker that died: wait until they end or fall silent (then
            # `recover` enqueues them again and they are launched here)
            follow([], studies, console, stop_on_signal=False, until_settled=True)
        else:
            break
    counts = count(studies)
    console.print(
        f"sweep {spec.name}: {counts['COMPLETE']} complete, {counts['PRUNED']} pruned, {counts['FAIL']} failed "
        f"(retries included), {counts['RUNNING']} running, {counts['WAITING']} waiting"
    )
    return counts["WAITING"] + counts["RUNNING"]


def keep_identity(spec: SweepSpec, spec_file: Path) -> None:
    """A rerun must describe the same trials (the launcher, resources and n_trials may change)."""
    if not spec_file.is_file():
        return
    saved = yaml.safe_load(spec_file.read_text())
    now = as_dict(spec)
    for key in IDENTITY:
        before, after = saved.get(key), now.get(key)
        if key == "search" and before and after:
            before, after = {**before, "n_trials": 0}, {**after, "n_trials": 0}
        if before != after:
            raise ConfigError(
                f"the sweep {spec.name} in {spec.folder} was started with a different {key}: rerun it with the same "
                f"spec (only launcher, resources and search.n_trials may change), or give the new sweep another name."
            )


def count(studies: list[optuna.Study]) -> Counter:
    counts: Counter = Counter()
    for study in studies:
        counts.update(trial.state.name for trial in study.get_trials(deepcopy=False))
    return counts


def launch(
    spec: SweepSpec, plan: Plan, studies: list[optuna.Study], spec_file: Path, fit: Fit, console: Console, waiting: int
) -> None:
    """Start workers for the waiting trials and follow them until they stop."""
    kind = spec.launcher.kind
    if kind == "inline":
        Worker(str(spec_file), fit, kind="inline")()
        return
    if kind == "local":
        jobs = start_local(spec, spec_file, fit, min(spec.launcher.workers, waiting))
    else:
        jobs = start_slurm(spec, spec_file, fit, waiting)
        console.print(f"submitted SLURM array {jobs[0].job_id.split('_')[0]} ({len(jobs)} tasks)")
        if not spec.launcher.wait:
            return
    follow(jobs, studies, console, stop_on_signal=kind == "local")


def settled(jobs: list[submitit.Job], studies: list[optuna.Study], until_settled: bool) -> bool:
    if not until_settled:
        return all(job.done() for job in jobs)
    recover(studies)
    counts = count(studies)
    return counts["RUNNING"] == 0 or counts["WAITING"] > 0


def local_slots(spec: SweepSpec, workers: int) -> list[tuple[list[int] | None, int | None]]:
    """Each local worker's cores (`threads` of them) and GPU (1/gpus workers share one)."""
    threads = spec.resources.threads
    cores = spec.launcher.cores or sorted(os.sched_getaffinity(0))
    if workers * threads > len(cores):
        raise ConfigError(
            f"launcher.workers = {workers} × resources.threads = {threads} needs {workers * threads} cores; this "
            f"process may use {len(cores)} ({cores}). Use fewer workers or threads, or list launcher.cores."
        )
    gpus: list[int | None] = [None] * workers
    if spec.resources.gpus:
        import torch

        available = torch.cuda.device_count()
        per_gpu = round(1 / spec.resources.gpus) if spec.resources.gpus < 1 else 1  # 0.333 → 3 workers a GPU
        if workers > available * per_gpu:
            raise ConfigError(
                f"launcher.workers = {workers} with resources.gpus = {spec.resources.gpus} needs "
                f"{math.ceil(workers / per_gpu)} GPUs; {available} visible."
            )
        gpus = [index // per_gpu for index in range(workers)]
    return [(cores[index * threads : (index + 1) * threads], gpus[index]) for index in range(workers)]


def start_local(spec: SweepSpec, spec_file: Path, fit: Fit, workers: int) -> list[submitit.Job]:
    executor = submitit.LocalExecutor(folder=spec.folder / "workers" / "%j")
    threads = str(spec.resources.threads)
    jobs = []
    for cores, gpu in local_slots(spec, workers):
        executor.update_parameters(
            timeout_min=FOREVER_MIN,
            gpus_per_node=0 if gpu is None else 1,
            visible_gpus=() if gpu is None else (gpu,),
            stderr_to_stdout=True,
        )
        with threads_in_environment(threads):  # read when the worker's torch loads
            jobs.append(executor.submit(Worker(str(spec_file), fit, "local", cores, gpu, None, os.getpid())))
    return jobs


class threads_in_environment:
    """OMP_NUM_THREADS and MKL_NUM_THREADS for the processes started inside (torch reads them when it loads)."""

    def __init__(self, threads: str) -> None:
        self.threads = threads

    def __enter__(self) -> None:
        self.saved = {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        os.environ.update(OMP_NUM_THREADS=self.threads, MKL_NUM_THREADS=self.threads)

    def __exit__(self, *exc: Any) -> None:
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def start_slurm(spec: SweepSpec, spec_file: Path, fit: Fit, waiting: int) -> list[submitit.Job]:
    """An array of one task per waiting trial, `workers` at a time; each task takes one trial and is requeued (and
    resumes it) when preempted or timed out."""
    executor = submitit.AutoExecutor(folder=spec.folder / "workers" / "%j", cluster="slurm")
    launcher, resources = spec.launcher, spec.resources
    parameters: dict[str, Any] = {
        "slurm_array_parallelism": launcher.workers,
        "cpus_per_task": resources.threads,
        "timeout_min": resources.time_min,
        "mem_gb": resources.memory_gb,
        "tasks_per_node": 1,
        "nodes": 1,
        "name": f"lit-vir-{spec.name}",
    }
    if resources.gpus:
        parameters["gpus_per_node"] = 1
    for option in ("partition", "account", "qos"):
        if getattr(launcher, option):
            parameters[f"slurm_{option}"] = getattr(launcher, option)
    if launcher.slurm_options:
        parameters["slurm_additional_parameters"] = dict(launcher.slurm_options)
    executor.update_parameters(**parameters)
    with threads_in_environment(str(resources.threads)), executor.batch():
        jobs = [executor.submit(Worker(str(spec_file), fit, "slurm", max_trials=1)) for _ in range(waiting)]
    return jobs


def follow(
    jobs: list[submitit.Job],
    studies: list[optuna.Study],
    console: Console,
    stop_on_signal: bool,
    until_settled: bool = False,
) -> None:
    """A progress bar of finished trials until every job has ended (or, `until_settled`, until no trial is
    running or a silent one is found); SIGTERM/Ctrl-C stops the local workers (each checkpoints and enqueues its
    trial again) and then this process."""
    received: list[int] = []

    def stop(signum: int, _frame: Any) -> None:
        received.append(signum)
        for job in jobs:
            process = getattr(job, "_process", None)  # submitit's local controller; it passes SIGTERM to its task
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)

    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    if stop_on_signal:
        for number in previous:
            signal.signal(number, stop)
    total = sum(len(study.get_trials(deepcopy=False)) for study in studies)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("trials", total=total)
            while not settled(jobs, studies, until_settled):
                counts = count(studies)
                finished = counts["COMPLETE"] + counts["PRUNED"] + counts["FAIL"]
                total = sum(counts.values())
                progress.update(
                    task,
                    completed=finished,
                    total=total,
                    description=f"trials ({counts['RUNNING']} running, {counts['PRUNED']} pruned, "
                    f"{counts['FAIL']} failed)",
                )
                time.sleep(1)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    for job in jobs:
        if job.state not in ("FINISHED", "COMPLETED") and not received:
            console.print(f"[yellow]worker {job.job_id} ended {job.state}: see {job.paths.stdout}[/]")
    if received:
        raise SystemExit(128 + received[0])
