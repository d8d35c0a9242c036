"""Shared fixtures: the repo's configs, tiny model overrides and a runner for the real console script."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# A ViR small enough for a CPU test: N 32, D 16, M 32 (still the reference topology and readout).
TINY_VIR = [
    "--model.backbone.init_args.num_nodes",
    "32",
    "--model.backbone.init_args.jump_size",
    "5",
    "--model.backbone.init_args.embed_dim",
    "16",
    "--model.backbone.init_args.mlp_dim",
    "32",
]
# The same sizes as `lit-vir bench --overrides` takes them (`key=value`, no leading dashes).
TINY_OVERRIDES = [f"{key[2:]}={value}" for key, value in zip(TINY_VIR[::2], TINY_VIR[1::2], strict=True)]
# Keep test runs short and quiet: few batches, no Rich rendering to a pipe.
QUICK_TRAINER = [
    "--trainer.accelerator",
    "cpu",
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_train_batches",
    "3",
    "--trainer.limit_val_batches",
    "2",
    "--trainer.limit_test_batches",
    "2",
    "--trainer.enable_progress_bar",
    "false",
]


def console_script(name: str) -> str:
    """The installed console script next to this interpreter (proves the package's entry points)."""
    script = Path(sys.executable).with_name(name)
    if not script.exists():
        pytest.fail(f"console script {name!r} is not installed next to {sys.executable}; run `pip install -e .`")
    return str(script)


@pytest.fixture(autouse=True, scope="session")
def subprocesses_import_this_tree():
    """Every subprocess a test starts (the console script, `python -m lit_vir`, `python -c`) imports lit_vir and
    tests/ from this tree, wherever it lives: the environment's editable install may point at another checkout,
    and a copy of the tree (an unpacked release, a mutation tool's copy) is not installed at all."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(dict.fromkeys(paths)))
        yield


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread per test process: on a 2-core machine shared with subprocess runs, OpenMP threads
    that wait on each other make small products 10–30× slower and timings erratic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich output 200 columns wide in this process (rich elides a model summary's rows at 80). Rich's global
    console reads COLUMNS once, when it is made, so an earlier test in the same process (as under pytest-xdist)
    can leave one of width 80: it is made again here."""
    import rich

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(rich, "_console", None)


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run `lit-vir ARGS` in a subprocess inside tmp_path; fail with its output unless it exits 0.

    No clock of its own: the suite's per-test limit (pytest-timeout) stops a hung run, and
    `subprocess.run` kills the child when it does. A fixed 300 s failed healthy runs on a loaded machine."""

    def run(*args: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
        """`prefix`: a command the console script runs under, e.g. ["taskset", "-c", "0"]."""
        # One OpenMP thread, as in-process (see one_torch_thread): two spinning threads per process on a
        # busy 2-core machine made a 35-second run take 10 minutes.
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
        completed = subprocess.run(
            [*(prefix or []), console_script("lit-vir"), *args],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
        )
        if completed.returncode != 0:
            output = f"{completed.stdout}\n{completed.stderr}"
            pytest.fail(f"lit-vir {' '.join(args)} exited {completed.returncode}:\n{output}")
        return completed

    return run
