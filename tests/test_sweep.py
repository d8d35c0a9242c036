"""`lit-vir sweep` on the real engine: Optuna studies in SQLite or a real PostgreSQL server, submitit workers on this
machine or a real single-node SLURM cluster, real `lit-vir fit` trials on scikit-learn's digits with a tiny ViR.

The cluster parts start their servers with scripts/local_cluster.sh and are skipped, with the reason, only where
they cannot start. Tests that act on a running sweep synchronise on what the child cannot pass (a trial blocked in
`WaitForSignal` until a signal is handled, a trial blocked at a rendezvous until both drivers hold one)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from lit_vir.cli import main
from lit_vir.models.reservoir_options import ReservoirOptions
from lit_vir.sweep.spaces import BACKBONE, reservoir_space
from lit_vir.sweep.spec import Grid, Row, SweepSpec, cells, read_spec
from lit_vir.sweep.storage import redacted
from lit_vir.training.checkpoints import read_checkpoint
from tests.callbacks import MARKER
from tests.conftest import CONFIGS, REPO

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

# A trial of a few seconds: the quickstart's ViR at the tests' tiny size, 4 training batches per epoch.
TINY_TRIAL = {
    "model.init_args.backbone.init_args.num_nodes": 32,
    "model.init_args.backbone.init_args.jump_size": 5,
    "model.init_args.backbone.init_args.embed_dim": 16,
    "model.init_args.backbone.init_args.mlp_dim": 32,
    "trainer.max_epochs": 2,
    "trainer.limit_train_batches": 4,
    "trainer.limit_val_batches": 2,
    "trainer.enable_progress_bar": False,
    "trainer.enable_model_summary": False,
    "test_after_fit": False,
}


def cores(count: int) -> list[int]:
    """`count` cores this process may use, repeated when it may use fewer (CI has 2; a pinned run has 1)."""
    allowed = sorted(os.sched_getaffinity(0))
    return [allowed[index % len(allowed)] for index in range(count)]


def write_spec(folder: Path, name: str = "tiny", **fields) -> Path:
    """A sweep spec on digits with tiny trials; `fields` are merged over the defaults (dicts one level deep)."""
    spec = {
        "name": name,
        "base": [str(CONFIGS / "quickstart.yaml")],
        "overrides": dict(TINY_TRIAL),
        "out": str(folder / "sweeps"),
        "launcher": {"kind": "inline", "heartbeat_s": 1, "grace_s": 10},
    }
    for key, value in fields.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) and isinstance(spec.get(key), dict) else value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def piece(folder: Path, name: str, content: dict) -> str:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(content))
    return str(path)


def wait_for_signal_piece(folder: Path, step: int) -> str:
    """A config piece adding tests.callbacks.WaitForSignal: the trial blocks at `step` until signalled."""
    callback = {"class_path": "tests.callbacks.WaitForSignal", "init_args": {"step": step}}
    return piece(folder, "wait", {"trainer": {"callbacks+": [callback]}})


def trials(spec_path: Path) -> list[optuna.trial.FrozenTrial]:
    spec = read_spec(spec_path)
    storage = f"sqlite:///{(Path(spec.out) / spec.name / 'optuna.db')}" if not spec.storage else spec.storage
    found = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if summary.study_name == spec.name or summary.study_name.startswith(f"{spec.name}."):
            found += optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)
    return found


def trial_record(folder: Path) -> dict:
    return yaml.safe_load((folder / "trial.yaml").read_text())


def run_folders(spec_path: Path) -> list[Path]:
    spec = read_spec(spec_path)
    return sorted(path.parent for path in (Path(spec.out) / spec.name / "runs").glob("*/*/trial.yaml"))


class Driver:
    """`python -m lit_vir sweep run -c SPEC` in a subprocess (its workers find tests.callbacks on PYTHONPATH),
    its output in a file: its workers inherit the descriptor, so a pipe would stay open after it is killed."""

    def __init__(self, spec_path: Path, *extra: str) -> None:
        environment = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.log = spec_path.with_name(f"driver-{len(list(spec_path.parent.glob('driver-*')))}.log")
        with open(self.log, "w") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lit_vir", "sweep", "run", "-c", str(spec_path), *extra],
                cwd=spec_path.parent,
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                # a shell's background job ignores SIGINT and its children inherit that; the tests that stop a
                # trial with SIGINT or wait at a step for a signal need the default, whoever started pytest
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )

    def ended(self) -> bool:
        """Whether it has exited (a test waiting on its workers then stops waiting, with its output)."""
        if self.process.poll() is None:
            return False
        pytest.fail(f"the driver exited {self.process.returncode} first:\n{self.log.read_text(errors='replace')}")

    def wait(self) -> tuple[int, str]:
        """Its exit code and output, once it has ended (pytest-timeout bounds a hang)."""
        try:
            code = self.process.wait()
        finally:
            self.process.kill()
        return code, self.log.read_text(errors="replace")


def driver(spec_path: Path, *extra: str) -> Driver:
    return Driver(spec_path, *extra)


def wait_until(condition, what: str, poll: float = 0.2):
    """Poll for a state the watched process cannot pass on its own (pytest-timeout bounds a hang)."""
    while not (found := condition()):
        time.sleep(poll)
    return found


def marker_in_worker_logs(sweep_folder: Path) -> bool:
    return any(MARKER in log.read_text(errors="replace") for log in sweep_folder.glob("workers/*/*.out"))


# ---------------------------------------------------------------------------------------------------------- spec


def test_the_grid_expands_into_cells_with_their_argv_in_order(tmp_path):
    spec = SweepSpec(
        name="g",
        base=["base.yaml"],
        overrides={"trainer.max_epochs": 3},
        grid=Grid(
            rows={"a": Row(pieces=["p.yaml"], overrides={"trainer.max_epochs": 5}), "b": Row()},
            datasets=["configs/data/mnist.yaml", "configs/data/cifar10.yaml"],
            params={"model.init_args.backbone.init_args.spectral_radius": [0.8, 1.1]},
            seeds=[1, 2],
        ),
    )
    found = cells(spec)
    assert [cell.name for cell in found] == [
        "a-mnist-0.8",
        "a-mnist-1.1",
        "a-cifar10-0.8",
        "a-cifar10-1.1",
        "b-mnist-0.8",
        "b-mnist-1.1",
        "b-cifar10-0.8",
        "b-cifar10-1.1",
    ]
    # pieces first, then the sweep's overrides, the row's (which win) and the params
    assert list(found[1].argv) == [
        "-c",
        "p.yaml",
        "-c",
        "configs/data/mnist.yaml",
        "--trainer.max_epochs",
        "3",
        "--trainer.max_epochs",
        "5",
        "--model.init_args.backbone.init_args.spectral_radius",
        "1.1",
    ]
    assert dict(found[6].params) == {
        "row": "b",
        "dataset": "cifar10",
        "model.init_args.backbone.init_args.spectral_radius": 0.8,
    }


def test_the_reservoir_preset_is_read_off_reservoir_options():
    declared = {
        "num_nodes": (200, 2000, True, "int"),
        "spectral_radius": (0.5, 1.5, False, "float"),
        "input_sparsity": (0.01, 0.5, True, "float"),
        "input_scaling": (0.2, 2.0, True, "float"),
        "leak_rate": (0.05, 1.0, True, "float"),
    }
    space = reservoir_space()
    assert {key.removeprefix(BACKBONE): (p.low, p.high, p.log, p.type) for key, p in space.items()} == declared
    for name, (low, high, *_) in declared.items():  # both ends are values ReservoirOptions accepts
        ReservoirOptions(**{name: low}, jump_size=137 if name != "num_nodes" else 5)
        ReservoirOptions(**{name: high}, jump_size=137 if name != "num_nodes" else 5)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (  # a searched range that leaves the field's declared range: named with the key, value and range
            {"search": {"space": {"model.backbone.init_args.spectral_radius": {"low": 0.0, "high": 1.2}}}},
            [
                "search.space.model.init_args.backbone.init_args.spectral_radius = 0.0",
                "spectral_radius (α) = 0.0 is outside the allowed range (0, inf)",
            ],
        ),
        (  # a key no part of the config has
            {"search": {"space": {"model.init_args.backbone.init_args.spectral_radiuss": {"low": 0.5, "high": 1}}}},
            ["search.space.model.init_args.backbone.init_args.spectral_radiuss", "spectral_radiuss"],
        ),
        (  # a key the datamodule sets
            {"search": {"space": {"model.backbone.init_args.image_size": {"choices": [8, 16]}}}},
            ["model.init_args.backbone.init_args.image_size is linked from the datamodule", "grid.datasets"],
        ),
        (  # a grid value outside the range
            {"grid": {"params": {"model.init_args.backbone.init_args.leak_rate": [0.5, 1.5]}}},
            ["grid cell 1.5", "leak_rate (a) = 1.5 is outside the allowed range (0, 1]"],
        ),
        (
            {"search": {"space": {"model.init_args.optimizer.init_args.lr": {"low": -1e-3, "high": 1e-2}}}},
            ["lr = -0.001", "Invalid learning rate"],
        ),
        (
            {"search": {"space": {"model.init_args.optimizer.init_args.lr": {"low": 1e-2, "high": 1e-3}}}},
            ["low = 0.01 must be smaller than high = 0.001"],
        ),
        ({"launcher": {"workers": 0}}, ["launcher.workers = 0 is outside the allowed range [1, inf)"]),
        (
            {"launcher": {"kind": "local", "workers": 64}},
            ["launcher.workers = 64 × resources.threads = 1 needs 64 cores"],
        ),
        ({"resources": {"gpus": 0.4}}, ["resources.gpus = 0.4: give 0, 1, or 1/k to share a GPU among k workers"]),
        ({"pruner": {"kind": "wilcoxon"}}, ["pruner.kind = 'wilcoxon' compares a trial's seeds: it needs a search"]),
        ({"storage": "postgresql+psycopg2://me:s3cret@db/sweeps"}, ["holds a password", "PGPASSWORD", "***"]),
    ],
)
def test_a_bad_spec_is_refused_before_anything_runs(tmp_path, capsys, fields, expected):
    spec = write_spec(tmp_path, **fields)
    with pytest.raises(SystemExit) as stopped:
        main(["sweep", "run", "-c", str(spec)])
    assert stopped.value.code == 2
    message = capsys.readouterr().err
    assert message.startswith("lit-vir: invalid configuration: "), message
    for fragment in expected:
        assert fragment in message, message
    assert "s3cret" not in message
    assert not (tmp_path / "sweeps").exists()  # nothing written, no storage created


def test_a_mistyped_option_is_refused_like_every_lit_vir_config(tmp_path, capsys):
    spec = write_spec(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(["sweep", "run", "-c", str(spec), "--launcher.kind", "cloud"])
    assert stopped.value.code == 2
    assert "launcher.kind" in capsys.readouterr().err


def test_help_shows_examples_and_print_config_gives_a_spec_that_parses_back(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "lit-vir sweep run -c configs/sweep/digits.yaml" in text
    with pytest.raises(SystemExit):
        main(
            ["sweep", "run", "-c", str(CONFIGS / "sweep" / "digits.yaml"), "--launcher.workers", "3", "--print_config"]
        )
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    again = read_spec(printed)
    assert again.launcher.workers == 3 and list(again.grid.rows) == ["vir", "no_reservoir"]


def test_the_storage_url_is_printed_without_its_password():
    url = "postgresql+psycopg2://me:s3cret@db.example:5432/sweeps"
    assert redacted(url) == "postgresql+psycopg2://me:***@db.example:5432/sweeps"


# ------------------------------------------------------------------------------------------------ the real engine


def test_a_grid_on_two_local_workers_gives_run_folders_that_compare_reads(tmp_path, capsys, wide_console):
    spec = write_spec(
        tmp_path,
        grid={
            "rows": {"vir": {}, "no_reservoir": {"pieces": [str(CONFIGS / "ablation/no_reservoir.yaml")]}},
            "seeds": [1, 2],
        },
        launcher={"kind": "local", "workers": 2, "cores": cores(2)},
    )
    main(["sweep", "run", "-c", str(spec)])
    found = trials(spec)
    assert sorted((t.params["row"], t.params["seed"]) for t in found) == [
        ("no_reservoir", 1),
        ("no_reservoir", 2),
        ("vir", 1),
        ("vir", 2),
    ]
    assert all(t.state == TrialState.COMPLETE for t in found)
    folders = run_folders(spec)
    assert [f"{f.parent.name}/{f.name}" for f in folders] == [
        "no_reservoir/t001-s1",  # seed-major: every row's first seed, then the second
        "no_reservoir/t003-s2",
        "vir/t000-s1",
        "vir/t002-s2",
    ]
    for trial in found:
        folder = next(f for f in folders if f.name.startswith(f"t{trial.number:03d}"))
        record, config = trial_record(folder), yaml.safe_load((folder / "config.yaml").read_text())
        assert record["state"] == "COMPLETE" and record["value"] == trial.value
        assert config["seed_everything"] == trial.params["seed"]
        assert config["model"]["init_args"]["backbone"]["init_args"]["seed"] == trial.params["seed"]  # new reservoir
        assert config["model"]["init_args"]["backbone"]["init_args"]["use_reservoir"] is (trial.params["row"] == "vir")
        environment = yaml.safe_load((folder / "environment.yaml").read_text())
        assert environment["threads"]["cpu_affinity"] == record["attempts"][0]["cores"]
        assert len(record["attempts"][0]["cores"]) == 1  # each worker pinned to its own share
        # the trial's value is the best val/acc its run logged
        events = tb_scalars(folder, "val/acc")
        assert trial.value == pytest.approx(max(events), abs=1e-7)
    capsys.readouterr()
    main(["compare", str(tmp_path / "sweeps/tiny/runs/*/*"), "--output", str(tmp_path / "comparison")])
    compared = (tmp_path / "comparison" / "compare.csv").read_text().splitlines()
    assert len(compared) == 1 + 4
    capsys.readouterr()  # compare's table ("epochs completed") is not the status
    main(["sweep", "status", "-c", str(spec)])
    status = capsys.readouterr().out
    assert status.count("complete") == 4 and "vir/t002-s2" in status


def tb_scalars(folder: Path, tag: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return [event.value for event in events.Scalars(tag)]


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_driver_is_rerun_the_interrupted_trial_resumes_and_nothing_finished_reruns(tmp_path, stop):
    """The first trial finishes; the second is blocked at step 5 (of 8) when its driver is killed. Rerunning the same
    command resumes the second from the checkpoint saved at step 5 and does not run the first again."""
    spec = write_spec(
        tmp_path,
        grid={"rows": {"first": {}, "killed": {"pieces": [wait_for_signal_piece(tmp_path, step=5)]}}},
        launcher={"kind": "local", "workers": 1, "cores": cores(1)},
    )
    sweep = tmp_path / "sweeps" / "tiny"
    running = driver(spec)
    wait_until(lambda: running.ended() or marker_in_worker_logs(sweep), "the second trial at step 5")
    running.process.send_signal(stop)
    code, output = running.wait()
    assert code == (-stop if stop == signal.SIGKILL else 128 + stop), output
    # the worker noticed (SIGTERM forwarded, or its driver gone), saved a checkpoint and gave its trial back
    killed = sweep / "runs" / "killed" / "t001"
    wait_until(lambda: trial_record(killed)["state"] == "INTERRUPTED", "the trial recorded as interrupted")
    pid = trial_record(killed)["attempts"][0]["pid"]
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), "the worker to exit")
    assert read_checkpoint(killed / "checkpoints" / "last.ckpt")["global_step"] == 5
    main(["sweep", "run", "-c", str(spec)])
    found = trials(spec)
    assert [(t.number, t.state, t.user_attrs.get("outcome")) for t in found] == [
        (0, TrialState.COMPLETE, "complete"),
        (1, TrialState.FAIL, "interrupted"),
        (2, TrialState.COMPLETE, "complete"),  # the same parameters, resumed
    ]
    assert found[2].params == found[1].params and found[2].user_attrs["root_trial"] == 1
    assert found[2].user_attrs["crashes"] == 0  # an interruption is not a crash
    first = sweep / "runs" / "first" / "t000"
    assert len(trial_record(first)["attempts"]) == 1  # not run again
    record = trial_record(killed)
    assert [attempt["trial"] for attempt in record["attempts"]] == [1, 2] and record["resumed_from_checkpoint"]
    # each attempt's ending in its own entry; the trial's own fields are the last attempt's
    assert record["attempts"][0]["outcome"] == "interrupted" and "resumes" in record["attempts"][0]["reason"]
    assert (record["state"], record["outcome"], record["reason"]) == ("COMPLETE", "complete", "")
    assert "traceback" not in record and "outcome" not in record["attempts"][1]
    assert read_checkpoint(killed / "checkpoints" / "last.ckpt")["global_step"] == 8  # 2 epochs × 4, not 5 + 8
    assert len(tb_scalars(killed, "val/acc")) == 2  # one validation per epoch, none repeated


def test_a_combination_the_model_refuses_fails_with_its_message_and_is_not_retried(tmp_path, capsys, wide_console):
    """Each searched value alone is valid (so the spec passes its check), but N = 12 with ℓ = 20 is not: that trial
    fails with the model's message and is not run again; the others complete."""
    spec = write_spec(
        tmp_path,
        search={
            "space": {
                "model.init_args.backbone.init_args.num_nodes": {"choices": [12, 40]},
                "model.init_args.backbone.init_args.jump_size": {"choices": [5, 20]},
            },
            "sampler": "grid",
            "n_trials": 4,
        },
        overrides={**TINY_TRIAL, "trainer.max_epochs": 1},
    )
    main(["sweep", "run", "-c", str(spec)])  # nothing is left to run: a failed trial is finished
    found = trials(spec)
    states = {(t.params["num_nodes"], t.params["jump_size"]): (t.state, t.user_attrs["outcome"]) for t in found}
    assert states == {
        (12, 5): (TrialState.COMPLETE, "complete"),
        (12, 20): (TrialState.FAIL, "failed"),
        (40, 5): (TrialState.COMPLETE, "complete"),
        (40, 20): (TrialState.COMPLETE, "complete"),
    }  # four trials: the failed one was not enqueued again
    failed = next(t for t in found if t.state == TrialState.FAIL)
    assert "jump_size (ℓ) = 20 is outside the allowed range [1, 12)" in failed.user_attrs["reason"]
    assert "jump_size (ℓ) = 20" in trial_record(tmp_path / "sweeps/tiny/runs/tiny/t001")["reason"]
    main(["sweep", "status", "-c", str(spec)])
    assert "failed: invalid configuration" in capsys.readouterr().out
    # asked to, the sweep runs the failed trial again (and only it): here its cause is still there, so it fails again
    main(["sweep", "run", "-c", str(spec), "--launcher.retry_failed", "true"])
    assert "failed trials 1 enqueued again" in capsys.readouterr().out
    again = trials(spec)[4:]
    assert [(t.number, t.state, t.user_attrs["outcome"], t.user_attrs["root_trial"]) for t in again] == [
        (4, TrialState.FAIL, "failed", 1)
    ]
    assert again[0].params == failed.params and again[0].user_attrs["crashes"] == 0
    record = trial_record(tmp_path / "sweeps/tiny/runs/tiny/t001")
    assert record["state"] == "FAIL" and "jump_size (ℓ) = 20" in record["reason"]  # refused again before it ran
    main(["sweep", "run", "-c", str(spec)])  # without the flag, nothing runs again
    assert len(trials(spec)) == 5


def test_the_trial_value_is_the_best_over_the_whole_run_when_a_trial_resumes(tmp_path):
    """The reporter's best value travels in the checkpoint: a run resumed from last.ckpt with no budget left (it
    trains and validates no more) keeps the value of its validations before the interruption, and a resumed run that
    validates again keeps a better earlier value. A checkpoint without the reporter's state (written before it kept
    one) gives the best score of its ModelCheckpoint on the same metric."""
    from lit_vir.cli import run
    from lit_vir.sweep.trial import TrialReporter

    def reporter() -> TrialReporter:
        return TrialReporter(optuna.create_study(direction="maximize").ask(), "val/acc", "maximize", report=False)

    folder = tmp_path / "runs"
    argv = ["fit", "-c", str(CONFIGS / "quickstart.yaml"), *as_cli(TINY_TRIAL)]
    argv += ["--trainer.logger.init_args.save_dir", str(folder), "--trainer.logger.init_args.name", "r"]
    argv += ["--trainer.logger.init_args.version", "v"]
    first = reporter()
    run(argv, [first])
    run_folder = folder / "r" / "v"
    validations = tb_scalars(run_folder, "val/acc")  # the independent record: TensorBoard's
    assert len(validations) == 2 and first.best == pytest.approx(max(validations))
    last = run_folder / "checkpoints" / "last.ckpt"

    resumed = reporter()
    run([*argv, "--ckpt_path", str(last)], [resumed])  # max_epochs 2 reached: nothing to train or validate
    assert len(tb_scalars(run_folder, "val/acc")) == 2 and resumed.best == pytest.approx(max(validations))

    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    (key,) = [key for key in checkpoint["callbacks"] if key.startswith("TrialReporter")]
    checkpoint["callbacks"][key]["best"] = 2.0  # above any accuracy: only a value from before the resume is this
    torch.save(checkpoint, last)
    higher = reporter()
    run([*argv, "--ckpt_path", str(last), "--trainer.max_epochs", "3"], [higher])
    assert len(tb_scalars(run_folder, "val/acc")) == 3 and higher.best == 2.0

    legacy = torch.load(last, map_location="cpu", weights_only=False)
    del legacy["callbacks"][key]
    (model_checkpoint,) = [state for name, state in legacy["callbacks"].items() if "ModelCheckpoint{" in name]
    torch.save(legacy, last)
    restored = reporter()
    run([*argv, "--ckpt_path", str(last), "--trainer.max_epochs", "3"], [restored])
    assert restored.best == pytest.approx(float(model_checkpoint["best_model_score"]))
    assert restored.best == pytest.approx(max(tb_scalars(run_folder, "val/acc")))


def as_cli(overrides: dict) -> list[str]:
    return [
        item
        for key, value in overrides.items()
        for item in (f"--{key}", str(value).lower() if isinstance(value, bool) else str(value))
    ]


def test_a_killed_worker_is_found_by_its_silence_and_its_trial_resumes(tmp_path):
    """SIGKILL to the worker mid-trial (as the OOM killer would): no checkpoint can be saved then, no message sent.
    The driver finds the trial silent after the grace period, fails it as a crash and runs it again (max_retries
    1), from the checkpoint of its last finished epoch."""
    once = tmp_path / "blocked-once"
    wait = piece(
        tmp_path,
        "wait",
        {
            "trainer": {
                "callbacks+": [
                    {"class_path": "tests.callbacks.WaitForSignal", "init_args": {"step": 5, "once": str(once)}}
                ]
            }
        },
    )
    spec = write_spec(
        tmp_path,
        grid={"rows": {"crash": {"pieces": [wait]}}},
        launcher={"kind": "local", "workers": 1, "cores": cores(1), "max_retries": 1, "heartbeat_s": 1, "grace_s": 3},
    )
    sweep = tmp_path / "sweeps" / "tiny"
    running = driver(spec)
    wait_until(lambda: running.ended() or marker_in_worker_logs(sweep), "the trial at step 5")
    os.kill(trial_record(sweep / "runs/crash/t000")["attempts"][0]["pid"], signal.SIGKILL)
    code, output = running.wait()
    assert code == 0, output
    found = trials(spec)
    assert [(t.number, t.state) for t in found] == [(0, TrialState.FAIL), (1, TrialState.COMPLETE)]
    assert "outcome" not in found[0].user_attrs  # it said nothing: failed for its silence
    assert found[1].params == found[0].params and found[1].user_attrs["crashes"] == 1
    record = trial_record(sweep / "runs/crash/t000")
    assert len(record["attempts"]) == 2 and record["resumed_from_checkpoint"]
    assert record["attempts"][0]["outcome"] == "lost" and record["outcome"] == "complete"  # killed: said nothing
    assert read_checkpoint(sweep / "runs/crash/t000/checkpoints/last.ckpt")["global_step"] == 8
    assert len(tb_scalars(sweep / "runs/crash/t000", "val/acc")) == 2  # epoch 1's validation not repeated


def test_a_pruner_stops_a_hopeless_trial_and_its_folder_says_so(tmp_path, capsys, wide_console):
    """Median pruning after the first epoch: two learning rows, then one that cannot learn (lr 0)."""
    learning = {"overrides": {"model.init_args.optimizer.init_args.lr": 0.01}}
    spec = write_spec(
        tmp_path,
        overrides={**TINY_TRIAL, "trainer.max_epochs": 4, "trainer.limit_train_batches": 6},
        grid={
            "rows": {
                "a": learning,
                "b": learning,
                "hopeless": {"overrides": {"model.init_args.optimizer.init_args.lr": 0.0}},
            }
        },
        pruner={"kind": "median", "warmup_epochs": 1},
    )
    main(["sweep", "run", "-c", str(spec)])
    found = {t.params["row"]: t for t in trials(spec)}
    assert found["a"].state == TrialState.COMPLETE and found["b"].state == TrialState.COMPLETE
    hopeless = found["hopeless"]
    assert hopeless.state == TrialState.PRUNED
    # pruned at epoch 1, the first that is past the warm-up: its value there is below the others' median
    assert max(hopeless.intermediate_values) == 1
    others = [found[row].intermediate_values[1] for row in ("a", "b")]
    assert hopeless.intermediate_values[1] < np.median(others)
    record = trial_record(tmp_path / "sweeps/tiny/runs/hopeless/t002")
    assert record["state"] == "PRUNED" and record["outcome"] == "pruned" and "epoch 1" in record["reason"]
    main(["sweep", "status", "-c", str(spec)])
    assert "pruned" in capsys.readouterr().out


def test_the_report_lists_the_best_trials_and_draws_the_search(tmp_path, capsys, wide_console):
    spec = write_spec(
        tmp_path,
        overrides={**TINY_TRIAL, "trainer.max_epochs": 1},
        search={
            "presets": ["learning_rate"],
            "space": {"model.backbone.init_args.spectral_radius": {"low": 0.5, "high": 1.2}},
            "sampler": "random",
            "n_trials": 4,
        },
    )
    main(["sweep", "run", "-c", str(spec)])
    capsys.readouterr()
    main(["sweep", "report", "-c", str(spec), "--top", "2"])
    report = tmp_path / "sweeps/tiny/report"
    text = (report / "report.md").read_text()
    found = sorted(trials(spec), key=lambda trial: -trial.value)
    best = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(line.split("|")[1]) for line in best] == [found[0].number, found[1].number]
    assert f"{found[0].value:.4f}" in best[0] and f"{found[0].params['lr']:.6g}" in best[0]
    weights = [float(line.rsplit(":", 1)[1]) for line in text.splitlines() if line.startswith("- ")]
    assert len(weights) == 2 and sum(weights) == pytest.approx(1.0, abs=2e-3)  # fANOVA's shares sum to 1
    for figure in ("tiny-history.png", "tiny-parameters.png", "tiny-scatter-matrix.png"):
        assert (report / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sessions = list((report / "tensorboard" / "tiny").glob("trial_*"))
    assert len(sessions) == 4


# ------------------------------------------------------------------------------------------------ real servers


def rendezvous_piece(folder: Path, parties: int) -> str:
    callback = {
        "class_path": "tests.callbacks.Rendezvous",
        "init_args": {"folder": str(folder / "met"), "parties": parties},
    }
    return piece(folder, "rendezvous", {"trainer": {"callbacks+": [callback]}})


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server on a Unix socket (scripts/local_cluster.sh), for the session. Its folder is made
    outside pytest's temporary tree, whose folders only their owner may enter: the server runs as `postgres`."""
    folder = Path(tempfile.mkdtemp(prefix="lit-vir-postgres-"))
    folder.chmod(0o755)
    script = str(REPO / "scripts" / "local_cluster.sh")
    started = subprocess.run([script, "postgres", "start", str(folder)], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.skip(f"no PostgreSQL server could start here: {started.stderr.strip() or started.stdout.strip()}")
    yield started.stdout.strip().splitlines()[-1]
    subprocess.run([script, "postgres", "stop", str(folder)], capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_two_drivers_on_one_storage_split_the_trials_and_run_none_twice(tmp_path, request, storage):
    """Two drivers start together on one storage; each runs trials in its own process. Each trial's first epoch
    waits until both drivers hold a trial, so both take part; none runs twice."""
    fields = {}
    if storage == "postgresql":
        fields["storage"] = request.getfixturevalue("postgres_url")
    name = f"two{os.getpid()}{tmp_path.name[-4:]}".replace("_", "")
    spec = write_spec(
        tmp_path,
        name=name,
        base=[str(CONFIGS / "quickstart.yaml"), rendezvous_piece(tmp_path, parties=2)],
        overrides={**TINY_TRIAL, "trainer.max_epochs": 1},
        grid={"seeds": [1, 2, 3, 4, 5]},
        **fields,
    )
    drivers = [driver(spec), driver(spec)]
    ended = [running.wait() for running in drivers]
    assert [code for code, _ in ended] == [0, 0], "\n".join(output for _, output in ended)
    found = trials(spec)
    assert sorted(t.params["seed"] for t in found) == [1, 2, 3, 4, 5]  # five trials, none added
    assert all(t.state == TrialState.COMPLETE for t in found)
    records = [trial_record(folder) for folder in run_folders(spec)]
    assert all(len(record["attempts"]) == 1 for record in records)
    assert len({record["attempts"][0]["pid"] for record in records}) == 2  # both drivers ran trials


def test_the_storage_password_never_leaves_its_file(tmp_path, postgres_url, capsys, wide_console):
    """A URL with a password, given through storage_file (the server trusts local connections, so any password
    works): the sweep runs, and the password is in no output, spec copy or run folder."""
    secret = "pw-never-shown-0451"
    with_password = postgres_url.replace("postgres@", f"postgres:{secret}@")
    url_file = tmp_path / "storage.url"
    url_file.write_text(with_password + "\n")
    spec = write_spec(
        tmp_path, name=f"pw{os.getpid()}", storage_file=str(url_file), overrides={**TINY_TRIAL, "trainer.max_epochs": 1}
    )
    main(["sweep", "run", "-c", str(spec)])
    main(["sweep", "status", "-c", str(spec)])
    main(["sweep", "report", "-c", str(spec)])
    shown = capsys.readouterr()
    assert "complete" in shown.out
    assert secret not in shown.out + shown.err
    written = [path for path in (tmp_path / "sweeps").rglob("*") if path.is_file()]
    assert written and not [path for path in written if secret.encode() in path.read_bytes()]


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real single-node SLURM cluster (munge, slurmctld, slurmd; scripts/local_cluster.sh), for the session."""
    if shutil.which("slurmctld") is None:
        pytest.skip("SLURM is not installed (apt-get install -y slurm-wlm munge)")
    folder = tmp_path_factory.mktemp("slurm")
    script = str(REPO / "scripts" / "local_cluster.sh")
    started = subprocess.run([script, "slurm", "start", str(folder)], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.skip(f"no SLURM cluster could start here: {started.stderr.strip() or started.stdout.strip()}")
    yield str(folder / "slurm.conf")
    subprocess.run([script, "slurm", "stop", str(folder)], capture_output=True)


def test_a_slurm_array_runs_the_trials_and_a_preempted_trial_resumes(tmp_path, slurm_cluster, monkeypatch):
    """Two trials as a 2-task array on a real SLURM cluster; the second is sent SLURM's time-out signal (USR2, as
    `scancel --signal` does for a job about to time out) at step 5: submitit requeues its task, which resumes the
    trial from the checkpoint saved at step 5."""
    monkeypatch.setenv("SLURM_CONF", slurm_cluster)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    spec = write_spec(
        tmp_path,
        grid={"rows": {"first": {}, "preempted": {"pieces": [wait_for_signal_piece(tmp_path, step=5)]}}},
        launcher={"kind": "slurm", "workers": 2},
        resources={"threads": 1, "memory_gb": 2, "time_min": 10},
    )
    sweep = tmp_path / "sweeps" / "tiny"
    running = driver(spec)
    log = wait_until(
        lambda: next((p for p in sweep.glob("workers/*/*.out") if MARKER in p.read_text()), None), "step 5"
    )
    job = log.parent.name  # <array id>_<task>
    subprocess.run(["scancel", "--signal", "USR2", job], check=True)
    # SLURM holds a requeued job for 2 minutes; let it start at once
    wait_until(lambda: "BeginTime" in squeue(job), "the requeued task")
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
    code, output = running.wait()
    assert code == 0, output
    found = trials(spec)
    assert [(t.state, t.user_attrs.get("outcome")) for t in found] == [
        (TrialState.COMPLETE, "complete"),
        (TrialState.FAIL, "interrupted"),
        (TrialState.COMPLETE, "complete"),
    ]
    record = trial_record(sweep / "runs" / "preempted" / "t001")
    assert [attempt["kind"] for attempt in record["attempts"]] == ["slurm", "slurm"]
    assert record["resumed_from_checkpoint"]
    assert read_checkpoint(sweep / "runs/preempted/t001/checkpoints/last.ckpt")["global_step"] == 8


def squeue(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True).stdout


def test_a_trial_run_again_is_taken_before_the_trials_that_never_started(tmp_path):
    """Three slots; two workers take the first two, and both are interrupted, the second's requeue first. The next
    takes resume the first, then the second (by first number, not by when they were enqueued again), and only then
    does the third start."""
    from optuna.storages import RDBStorage

    from lit_vir.sweep.storage import pop_waiting
    from lit_vir.sweep.trial import requeue

    storage = RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="order", storage=storage)
    for slot in range(3):
        study.enqueue_trial({"x": float(slot)}, user_attrs={"slot": slot})
    assert [pop_waiting(study, storage)[0] for _ in range(2)] == [0, 1]
    for number in (1, 0):
        study.tell(number, state=TrialState.FAIL)
        assert requeue(study, study.get_trials(deepcopy=False)[number], max_retries=0, crashed=False)
    order = [pop_waiting(study, storage)[0] for _ in range(3)]
    assert order == [4, 3, 2]  # trial 4 resumes trial 0, trial 3 resumes trial 1
    found = {trial.number: trial for trial in study.get_trials(deepcopy=False)}
    assert [found[number].user_attrs.get("root_trial", number) for number in order] == [0, 1, 2]
    assert pop_waiting(study, storage) is None
