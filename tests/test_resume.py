"""Exact resume, atomic checkpoints, safe loading and saving on interruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_vir.cli import main
from lit_vir.training.checkpoints import (
    AtomicCheckpointIO,
    CheckpointError,
    best_checkpoint,
    load_classifier,
    read_checkpoint,
)
from tests.callbacks import MARKER
from tests.conftest import CONFIGS, TINY_VIR, console_script
from tests.fakedata import write_mnist

DETERMINISTIC = [
    "-c",
    str(CONFIGS / "vir.yaml"),
    *TINY_VIR,
    "--model.backbone.init_args.dropout",
    "0.2",  # exercises the random stream during training
    "--data.init_args.download",
    "false",
    "--data.init_args.augment",
    "true",
    "--data.init_args.batch_size",
    "50",
    "--trainer.accelerator",
    "cpu",
    "--trainer.deterministic",
    "true",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.log_every_n_steps",
    "1",
]


def fit_in(folder: Path, monkeypatch, *args: str) -> Path:
    write_mnist(folder / "data", train=300, test=50)
    monkeypatch.chdir(folder)
    main(["fit", *DETERMINISTIC, *args])
    return folder / "logs" / "vir-mnist" / "version_0"


def scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run))
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def test_last_checkpoint_is_the_last_epoch_even_when_an_earlier_one_was_best(tmp_path, monkeypatch):
    # lr 0: validation accuracy never improves after epoch 0, so the best checkpoint stays there;
    # lightning 2.6 alone would then leave last.ckpt at epoch 0 as well
    run = fit_in(tmp_path, monkeypatch, "--trainer.max_epochs", "3", "--model.optimizer.init_args.lr", "0.0")
    checkpoints = run / "checkpoints"
    (best,) = [path for path in checkpoints.glob("epoch*.ckpt")]
    assert read_checkpoint(best)["epoch"] == 0
    last = read_checkpoint(checkpoints / "last.ckpt")
    assert last["epoch"] == 2 and last["global_step"] == 3 * 6  # 300 images, 10% validation, batch 50


def test_two_epochs_equal_one_plus_resume_plus_one(tmp_path, monkeypatch):
    straight = fit_in(tmp_path / "straight", monkeypatch, "--trainer.max_epochs", "2")
    monkeypatch.setattr(sys, "argv", ["lit-vir", "first attempt"])  # what environment.yaml records as the command
    first_attempt = fit_in(tmp_path / "resumed", monkeypatch, "--trainer.max_epochs", "1") / "environment.yaml"
    before = yaml.safe_load(first_attempt.read_text())
    monkeypatch.setattr(sys, "argv", ["lit-vir", "second attempt"])
    resumed = fit_in(tmp_path / "resumed", monkeypatch, "--trainer.max_epochs", "2", "--ckpt_path", "last")
    assert resumed == tmp_path / "resumed" / "logs" / "vir-mnist" / "version_0"  # same folder, no version_1
    record = yaml.safe_load((resumed / "environment.yaml").read_text())  # the last attempt, and the first kept
    assert record["command"] == ["lit-vir", "second attempt"] and record["earlier_attempts"] == [before]
    assert before["command"] == ["lit-vir", "first attempt"] and "earlier_attempts" not in before
    assert not (resumed.parent / "version_1").exists()
    first = read_checkpoint(straight / "checkpoints" / "last.ckpt")["state_dict"]
    second = read_checkpoint(resumed / "checkpoints" / "last.ckpt")["state_dict"]
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    for tag in ("val/acc", "val/loss", "train/loss_epoch"):
        assert scalars(straight, tag) == scalars(resumed, tag), tag


def test_resume_without_a_checkpoint_says_so(tmp_path, monkeypatch, capsys):
    write_mnist(tmp_path / "data", train=100, test=20)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *DETERMINISTIC, "--ckpt_path", "last"])
    assert exit_info.value.code == 1
    assert "no logs/vir-mnist/version_*/checkpoints/last.ckpt to resume" in capsys.readouterr().err


def test_interrupted_save_leaves_the_old_checkpoint_and_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, target)

    def killed_mid_write(obj, stream, *args, **kwargs):
        stream.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # what a kill during the write looks like from inside

    monkeypatch.setattr(torch, "save", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, target)
    monkeypatch.undo()
    assert torch.equal(read_checkpoint(target)["state_dict"]["w"], torch.ones(3))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["last.ckpt"]


def test_truncated_checkpoint_gives_a_clear_error(tmp_path):
    path = tmp_path / "cut.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:700])
    with pytest.raises(CheckpointError, match="not a readable checkpoint — truncated"):
        read_checkpoint(path)


def test_foreign_torch_file_is_not_taken_for_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        read_checkpoint(path)


class RunsCodeWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_that_would_run_code_is_refused_everywhere(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "code-ran"
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"payload": RunsCodeWhenUnpickled(marker)}}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_classifier(path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["test", "-c", str(CONFIGS / "quickstart.yaml"), "--ckpt_path", str(path)])
    assert exit_info.value.code == 1 and "refused to load" in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_epoch_saves_a_checkpoint_that_resumes(tmp_path, monkeypatch, signal_number):
    write_mnist(tmp_path / "data", train=120, test=20)
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}  # PYTHONPATH: conftest
    args = [
        "fit",
        "-c",
        str(CONFIGS / "vir.yaml"),
        *TINY_VIR,
        "--data.init_args.download",
        "false",
        "--data.init_args.batch_size",
        "4",
        "--trainer.accelerator",
        "cpu",
        "--trainer.max_epochs",
        "1",
        "--trainer.enable_progress_bar",
        "false",
    ]
    wait_at_step_5 = ["--trainer.callbacks+=tests.callbacks.WaitForSignal", "--trainer.callbacks.init_args.step", "5"]
    process = subprocess.Popen(
        [console_script("lit-vir"), *args, *wait_at_step_5],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # a shell's background job ignores SIGINT and its children inherit that; the run must see it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    output, signalled = [], False
    try:
        for line in process.stdout:  # blocks until the run prints; the run blocks at step 5 until signalled
            output.append(line)
            if line.startswith(f"{MARKER} 5"):
                process.send_signal(signal_number)
                signalled = True
        process.wait()  # no clock of its own: the suite's per-test limit stops a hung run
    finally:
        process.kill()  # nothing once it has exited; stops it when the test fails or times out first
    log = "".join(output)
    assert signalled, log
    last = tmp_path / "logs" / "vir-mnist" / "version_0" / "checkpoints" / "last.ckpt"
    assert last.exists(), log
    assert read_checkpoint(last)["global_step"] == 5, log  # saved where the signal came, mid-epoch (27 steps)
    # before any validation: no file named like a best checkpoint (Lightning's own would be epoch000-val_acc0.0000)
    assert [path.name for path in last.parent.iterdir()] == ["last.ckpt"], log
    if signal_number == signal.SIGTERM:  # the resumed run in process: the signal was the subprocess's part
        monkeypatch.chdir(tmp_path)
        main([*args, "--ckpt_path", "last"])
        assert read_checkpoint(last)["global_step"] == 27
        (best,) = last.parent.glob("epoch*.ckpt")
        assert best_checkpoint(last.parent.parent) == best


def validation_accuracies(run: Path) -> list[float]:
    return [value for _, value in scalars(run, "val/acc")]


def test_an_error_mid_epoch_leaves_the_best_checkpoint_alone(tmp_path, monkeypatch):
    """Stopped by an error in epoch 2 (after two validations): the interruption checkpoint is `last.ckpt`, at the
    step it stopped, and the only `epoch*` file is the best of the validations logged."""
    write_mnist(tmp_path / "data", train=300, test=50)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match="stopped at step 14"):
        main(
            [
                "fit",
                *DETERMINISTIC,
                "--trainer.max_epochs",
                "3",
                "--trainer.callbacks+=tests.callbacks.FailAtStep",
                "--trainer.callbacks.init_args.step",
                "14",
            ]
        )
    run = tmp_path / "logs" / "vir-mnist" / "version_0"
    folder = run / "checkpoints"
    accuracies = validation_accuracies(run)
    assert len(accuracies) == 2  # epochs 0 and 1 (6 steps each), stopped at step 14 of epoch 2
    (best,) = folder.glob("epoch*.ckpt")
    assert read_checkpoint(best)["epoch"] == accuracies.index(max(accuracies))  # the first of the best
    assert read_checkpoint(folder / "last.ckpt")["global_step"] == 14
    assert sorted(path.name for path in folder.iterdir()) == sorted([best.name, "last.ckpt"])
    assert best_checkpoint(run) == best


def test_without_save_last_an_error_is_saved_as_interrupted(tmp_path):
    """With `save_last` off, the interruption checkpoint gets a name of its own, not a top-k one."""
    from lightning.pytorch.demos.boring_classes import BoringModel

    from lit_vir.training.checkpoints import ResumableModelCheckpoint
    from tests.callbacks import FailAtStep

    checkpoint = ResumableModelCheckpoint(dirpath=tmp_path, save_last=False, save_on_exception=True)
    trainer = L.Trainer(
        max_epochs=3,
        limit_train_batches=4,
        limit_val_batches=1,
        callbacks=[checkpoint, FailAtStep(6)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(RuntimeError, match="stopped at step 6"):
        trainer.fit(BoringModel())
    assert sorted(path.name for path in tmp_path.iterdir()) == ["epoch=0-step=4.ckpt", "interrupted.ckpt"]
    assert read_checkpoint(tmp_path / "interrupted.ckpt")["global_step"] == 6


def test_best_checkpoint_is_the_recorded_one_not_the_first_on_disk(tmp_path, monkeypatch):
    """A stray file from an older lit_vir (`epoch000-val_acc0.0000.ckpt`, sorted first) is not taken for the best;
    a run without last.ckpt is refused with the path."""
    run = fit_in(tmp_path, monkeypatch, "--trainer.max_epochs", "2")
    folder = run / "checkpoints"
    accuracies = validation_accuracies(run)
    (best,) = folder.glob("epoch*.ckpt")
    (folder / "epoch000-val_acc0.0000.ckpt").write_bytes((folder / "last.ckpt").read_bytes())
    assert best_checkpoint(run) == best
    assert read_checkpoint(best)["epoch"] == accuracies.index(max(accuracies))
    (folder / "last.ckpt").unlink()
    with pytest.raises(CheckpointError, match=r"last\.ckpt: no such checkpoint"):
        best_checkpoint(run)
