"""What a run was made with: package versions, machine and command, saved next to its config.yaml."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning
import torch
import yaml
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard.summary import hparams

import lit_vir
from lit_vir.training.labels import run_hyperparameters

__all__ = ["SaveConfigAndEnvironment", "environment"]


def _git_commit() -> str | None:
    """The commit of the lit_vir checkout, if it is one (editable installs)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(lit_vir.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def cpu_name() -> str:
    """`<model name> × <cores>` from /proc/cpuinfo where there is one (Linux), else the platform's word."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        model = names[0] if names else model
    return f"{model} × {os.cpu_count()}"


THREAD_SETTINGS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "CUDA_VISIBLE_DEVICES")


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (what else ran beside the run), where the OS has them."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def threads() -> dict[str, Any]:
    """How much of the machine the run had: torch's intra- and inter-op threads, the thread settings of its
    environment, and the cores it may run on (its CPU affinity, e.g. set by `taskset` or a sweep's worker)."""
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_affinity": affinity,
        "cpu_count": os.cpu_count(),
        **{name: os.environ.get(name) for name in THREAD_SETTINGS},
    }


def now() -> str:
    """The local time with its UTC offset, to the second: when a run or an attempt started or ended."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def environment() -> dict[str, Any]:
    return {
        "lit_vir": lit_vir.__version__,
        "lit_vir_commit": _git_commit(),
        "torch": str(torch.__version__),
        "lightning": str(lightning.__version__),
        "python": platform.python_version(),
        "machine": platform.platform(),
        "cpu": cpu_name(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "threads": threads(),
        "load_average_start": load_average(),
        "started": now(),
        "command": list(sys.argv),
    }


# The metrics TensorBoard's HPARAMS tab shows next to each run's hyperparameters (read from the run's scalars).
HPARAM_METRICS = ("val/acc_best", "test/acc", "test_last/acc")


def write_hparams_summary(logger: TensorBoardLogger, config: dict) -> None:
    """The HPARAMS tab's session for this run: `run_hyperparameters(config)` against `HPARAM_METRICS`. Written
    directly rather than by `log_hyperparams(params, metrics)`, which would log placeholder values of the
    metrics as real scalars (a `test/acc` of 0 in a run that never tested)."""
    experiment, start, end = hparams(run_hyperparameters(config), dict.fromkeys(HPARAM_METRICS, 0.0))
    writer = logger.experiment._get_file_writer()
    for summary in (experiment, start, end):
        writer.add_summary(summary)
    writer.flush()


class SaveConfigAndEnvironment(SaveConfigCallback):
    """LightningCLI's config.yaml plus environment.yaml (versions, commit, machine, threads and CPU affinity, the
    load average at start and at the end, start time, command) and the run's row in TensorBoard's HPARAMS tab. A
    run resumed in its folder keeps the records of its earlier attempts (`earlier_attempts`): a resumed attempt may
    run on other cores, another commit or another machine, and the top level describes only the last one."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        """Runs on rank zero only, so it must not call collectives (`trainer.log_dir` broadcasts)."""
        folder = trainer.loggers[0].log_dir if trainer.loggers else trainer.default_root_dir
        if folder is None:
            return
        target = Path(folder) / "environment.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        record = environment()
        if target.is_file():  # a resumed run: what its earlier attempts ran on stays on record, oldest first
            earlier = yaml.safe_load(target.read_text()) or {}
            record["earlier_attempts"] = [*earlier.pop("earlier_attempts", []), earlier]
        target.write_text(yaml.safe_dump(record, sort_keys=False))
        self.environment_file = target
        tensorboard = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if tensorboard:
            write_hparams_summary(tensorboard[0], yaml.safe_load(self.parser.dump(self.config, skip_none=False)))

    def teardown(self, trainer, pl_module, stage: str) -> None:
        """The load average at the end, beside the one at the start (after an interruption too)."""
        target = getattr(self, "environment_file", None)
        if target is None or not trainer.is_global_zero or not target.is_file():
            return
        record = yaml.safe_load(target.read_text())
        record["load_average_end"] = load_average()
        target.write_text(yaml.safe_dump(record, sort_keys=False))
