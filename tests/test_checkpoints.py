"""The checkpoint helpers (`lit_vir.training.checkpoints`) on files written here: each refusal word for word, the
best checkpoint as last.ckpt records it, the preprocessing record and the model section read back; the runs that
write and resume checkpoints are tests/test_resume.py's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_vir.training.checkpoints import (
    AtomicCheckpointIO,
    CheckpointError,
    best_checkpoint,
    model_config,
    read_checkpoint,
    saved_preprocessing,
)


class Opaque:
    """A class instance: weights-only unpickling refuses it, as it would any object that could run code."""


def save(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(content, path)
    return path


def test_a_missing_file_and_a_file_that_would_run_code_are_refused_with_the_reason(tmp_path):
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(tmp_path / "none.ckpt")
    assert str(error.value) == f"{tmp_path / 'none.ckpt'}: no such checkpoint file."
    unsafe = save(tmp_path / "unsafe.ckpt", {"state_dict": {}, "object": Opaque()})  # an object: not plain data
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(unsafe)
    assert str(error.value).startswith(
        f"{unsafe}: refused to load: it holds Python objects beyond tensors and plain data, which could run code when "
        "unpickled (weights-only loading). Only load checkpoints you trust. Detail: "
    )
    assert "\n" not in str(error.value)  # the detail's first line only


def last_checkpoint(folder: Path, best: str | None, **extra) -> None:
    state = {"best_model_path": best, "monitor": "val/acc"} if best is not None else {"monitor": "val/acc"}
    callbacks = {"ResumableModelCheckpoint{'monitor': 'val/acc'}": state, "TrialReporter": {"best": 0.5}, **extra}
    save(folder / "checkpoints" / "last.ckpt", {"state_dict": {}, "callbacks": callbacks})


def test_the_best_checkpoint_is_the_one_last_ckpt_records_in_the_runs_own_folder(tmp_path):
    run = tmp_path / "moved" / "version_0"
    last_checkpoint(run, "/elsewhere/when/trained/checkpoints/epoch002-val_acc0.9000.ckpt")
    save(run / "checkpoints" / "epoch000-val_acc0.0000.ckpt", {"state_dict": {}})  # a stray one, first on disk
    with pytest.raises(CheckpointError) as error:
        best_checkpoint(run)
    best = run / "checkpoints" / "epoch002-val_acc0.9000.ckpt"
    assert (
        str(error.value) == f"{best}: the best checkpoint that {run / 'checkpoints' / 'last.ckpt'} records is missing."
    )
    save(best, {"state_dict": {}})
    assert best_checkpoint(run) == best
    assert best_checkpoint(str(run)) == best


def test_a_last_checkpoint_without_a_best_one_says_so(tmp_path):
    last_checkpoint(tmp_path, None)
    with pytest.raises(CheckpointError) as error:
        best_checkpoint(tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert str(error.value) == f"{last}: records no best checkpoint (no validation ran before it)."
    last_checkpoint(tmp_path, "")  # an empty record is none either
    with pytest.raises(CheckpointError, match="records no best checkpoint"):
        best_checkpoint(tmp_path)


def test_the_preprocessing_record_is_found_under_the_datamodules_name_or_asked_for():
    checkpoint = {"state_dict": {}, "epoch": 1, "FashionMNISTDataModule": {"preprocessing": {"image_size": 28}}}
    assert saved_preprocessing(checkpoint, "a.ckpt") == {"image_size": 28}
    with pytest.raises(CheckpointError) as error:
        saved_preprocessing({"state_dict": {}, "X": {"preprocessing": "not a record"}}, "a.ckpt")
    assert str(error.value) == (
        "a.ckpt: holds no preprocessing record (class names, image size, normalisation): it was written before "
        "lit_vir saved one, or without a lit_vir datamodule. Give the data config it was trained with (-c config.yaml "
        "of its run)."
    )


def test_the_model_section_is_the_class_path_and_the_public_hyperparameters():
    hyperparameters = {"_class_path": "lit_vir.training.ImageClassifier", "_instantiator": "x", "backbone": {"a": 1}}
    checkpoint = {"state_dict": {}, "hyper_parameters": hyperparameters | {"num_classes": 10}}
    assert model_config(checkpoint, "a.ckpt") == {
        "class_path": "lit_vir.training.ImageClassifier",
        "init_args": {"backbone": {"a": 1}, "num_classes": 10},
    }
    message = (
        "a.ckpt: its hyperparameters do not say how to build the model (a checkpoint not written by `lit-vir fit`?). "
        "Give the model config with -c."
    )
    for broken in (
        {},
        {"hyper_parameters": {"backbone": {}}},
        {"hyper_parameters": {"_class_path": "x", "backbone": 3}},
    ):
        with pytest.raises(CheckpointError) as error:
            model_config(broken, "a.ckpt")
        assert str(error.value) == message


def test_the_atomic_writer_refuses_storage_options_and_makes_its_folder(tmp_path):
    io = AtomicCheckpointIO()
    with pytest.raises(TypeError) as error:
        io.save_checkpoint({"state_dict": {}}, tmp_path / "a.ckpt", storage_options={"x": 1})
    assert str(error.value) == "AtomicCheckpointIO does not take storage_options, got {'x': 1}."
    target = tmp_path / "new" / "deeper" / "a.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.arange(3)}}, target)
    assert torch.equal(io.load_checkpoint(target)["state_dict"]["w"], torch.arange(3))
    assert sorted(path.name for path in target.parent.iterdir()) == ["a.ckpt"]  # no temporary file left
