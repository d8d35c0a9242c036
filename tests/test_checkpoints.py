"""The checkpoint helpers (`lit_vir.training.checkpoints`) on files written here: each refusal word for word, the
best checkpoint as last.ckpt records it, the preprocessing record and the model section read back; the runs that
write and resume checkpoints are tests/test_resume.py's."""

from __future__ import annotations

import collections
import os
import pickle
import re
import sys
from pathlib import Path

import lightning
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from lit_vir.models import ViR
from lit_vir.training import ImageClassifier, RidgeClassifier
from lit_vir.training.checkpoints import (
    AtomicCheckpointIO,
    CheckpointError,
    ResumableModelCheckpoint,
    best_checkpoint,
    load_classifier,
    model_config,
    read_checkpoint,
    saved_preprocessing,
)
from tests.callbacks import FailAtStep


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


def unsafe_and_torchs_own_error(tmp_path: Path) -> tuple[Path, str]:
    """A checkpoint holding a class instance, and the first line of the error torch's weights-only load gives."""
    unsafe = save(tmp_path / "unsafe.ckpt", {"state_dict": {}, "object": Opaque()})
    with pytest.raises(pickle.UnpicklingError) as error:
        torch.load(unsafe, weights_only=True)
    return unsafe, str(error.value).splitlines()[0]


def test_each_refusal_carries_the_first_line_of_torchs_own_reason(tmp_path):
    unsafe, reason = unsafe_and_torchs_own_error(tmp_path)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(unsafe)
    assert str(error.value).endswith(f"Only load checkpoints you trust. Detail: {reason}")

    cut = tmp_path / "cut.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1000)}}, cut)
    cut.write_bytes(cut.read_bytes()[:700])
    with pytest.raises(Exception) as torchs:  # whatever torch raises for the cut file
        torch.load(cut, weights_only=True)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(cut)
    assert str(error.value) == (
        f"{cut}: not a readable checkpoint — truncated (an interrupted copy?) or not written by torch.save "
        f"({type(torchs.value).__name__}: {str(torchs.value).splitlines()[0]})."
    )

    for content, kind in (([1, 2], "list"), ({"weight": torch.ones(2)}, "dict")):
        foreign = save(tmp_path / f"{kind}.pt", content)
        with pytest.raises(CheckpointError) as error:
            read_checkpoint(foreign)
        assert str(error.value) == (
            f"{foreign}: a torch file but not a Lightning checkpoint (a {kind} without 'state_dict')."
        )


def test_weights_only_loading_holds_even_when_the_environment_asks_torch_for_full_unpickling(tmp_path, monkeypatch):
    """`TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1` turns torch.load's default to full unpickling; lit_vir passes
    `weights_only=True` itself, so a file carrying code is refused all the same."""
    unsafe, _ = unsafe_and_torchs_own_error(tmp_path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match="refused to load"):
        read_checkpoint(unsafe)
    with pytest.raises(CheckpointError, match="refused to load"):
        AtomicCheckpointIO().load_checkpoint(unsafe)


class CountingLocation:
    """A `map_location` function (torch calls it once per stored tensor): counts how often a load used it."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, storage, location):
        self.calls += 1
        return storage


def storages(path: Path) -> int:
    """How many tensor storages one torch.load of `path` maps: the reference count for one load."""
    counter = CountingLocation()
    torch.load(path, map_location=counter, weights_only=True)
    assert counter.calls > 0
    return counter.calls


def test_the_map_location_given_reaches_every_load(tmp_path):
    path = save(tmp_path / "a.ckpt", {"state_dict": {"w": torch.ones(2), "b": torch.zeros(3)}})
    for load in (read_checkpoint, AtomicCheckpointIO().load_checkpoint):
        counter = CountingLocation()
        assert torch.equal(load(path, map_location=counter)["state_dict"]["b"], torch.zeros(3))
        assert counter.calls == storages(path)


def ridge_checkpoint(path: Path, class_path: str) -> tuple[Path, RidgeClassifier]:
    """A checkpoint as `lit-vir fit` writes one for the ridge readout (LightningCLI's `_class_path` and
    `_instantiator`, the backbone as its config), with a readout of random numbers to read back."""
    backbone = {"class_path": "lit_vir.models.ViR", "init_args": dict(TINY_RIDGE_VIR)}
    torch.manual_seed(0)
    model = RidgeClassifier(ViR(**TINY_RIDGE_VIR), ridges=(1e-3, 1e-1))
    model.readout_weight.copy_(torch.randn_like(model.readout_weight))
    model.ridge.fill_(1e-3)
    hyperparameters = {
        "_class_path": class_path,
        "backbone": backbone,
        "num_classes": 10,
        "ridges": [1e-3, 1e-1],
        "pooling": "mean",
        "memory_limit_gib": None,
        "_instantiator": "lightning.pytorch.cli.instantiate_module",
    }
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": hyperparameters,
        "pytorch-lightning_version": lightning.__version__,
    }
    return save(path, checkpoint), model


TINY_RIDGE_VIR = dict(
    num_classes=10, image_size=8, in_channels=1, patch_size=2, embed_dim=6, mlp_dim=8, num_nodes=12, jump_size=3
)


def test_a_checkpoint_is_loaded_as_the_imported_subclass_it_was_trained_as(tmp_path):
    path, model = ridge_checkpoint(tmp_path / "ridge.ckpt", "lit_vir.training.ridge.RidgeClassifier")
    counter = CountingLocation()
    loaded = load_classifier(path, map_location=counter)
    assert type(loaded) is RidgeClassifier
    assert counter.calls == 2 * storages(path)  # lit_vir's checked read, then Lightning's own
    assert loaded.ridges == [1e-3, 1e-1] and float(loaded.ridge) == 1e-3
    assert torch.equal(loaded.readout_weight, model.readout_weight)
    images = torch.rand(3, 1, 8, 8)
    assert torch.equal(loaded.eval()(images), model.eval()(images))


@pytest.mark.parametrize("class_path", ["collections.OrderedDict", "os.system", "lit_vir_never_imported.Evil", ""])
def test_a_class_path_that_is_no_imported_classifier_falls_back_to_the_base_class_and_imports_nothing(
    tmp_path, class_path
):
    """The base `ImageClassifier` then gets the ridge's hyperparameters: its strict state-dict load fails on the
    readout, so a wrong fallback is never silent; and the named module is never imported."""
    path, _ = ridge_checkpoint(tmp_path / "ridge.ckpt", class_path)
    chosen = []

    def recorded(cls, *args, **kwargs):
        chosen.append(cls)
        raise RuntimeError("stop: the class is what this test is about")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ImageClassifier, "load_from_checkpoint", classmethod(recorded))
        with pytest.raises(RuntimeError, match="stop: the class"):
            load_classifier(path)
    assert chosen == [ImageClassifier]
    assert "lit_vir_never_imported" not in sys.modules


class ListsTheFolderWhenPickled:
    """Pickled inside the checkpoint: records the folder's files at that moment, while the writer is mid-write."""

    def __init__(self, folder: Path, seen: list[str]) -> None:
        self.folder, self.seen = folder, seen

    def __reduce__(self):
        self.seen.extend(os.listdir(self.folder))
        return (collections.OrderedDict, ())  # plain data that weights-only loading accepts


def test_the_atomic_writer_writes_a_hidden_partial_file_beside_the_target_then_renames_it(tmp_path):
    seen: list[str] = []
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {}, "spy": ListsTheFolderWhenPickled(tmp_path, seen)}, target)
    (partial,) = seen  # the temporary, in the target's own folder (a rename never crosses file systems)
    assert re.fullmatch(r"\.last\.ckpt\.[^.]+\.partial", partial)
    assert sorted(os.listdir(tmp_path)) == ["last.ckpt"] and read_checkpoint(target)["spy"] == {}


def test_an_interrupt_just_after_the_rename_propagates_and_keeps_the_new_checkpoint(tmp_path, monkeypatch):
    """A signal between the rename and the end of the write: the temporary is already gone, and cleaning it up
    must not replace the interrupt with a FileNotFoundError."""
    target = tmp_path / "last.ckpt"
    replace = os.replace

    def replaced_then_interrupted(source, destination):
        replace(source, destination)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", replaced_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2)}}, target)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["last.ckpt"]
    assert torch.equal(read_checkpoint(target)["state_dict"]["w"], torch.ones(2))


class WorseEachValidation(BoringModel):
    """Logs `score` = −step at every validation: the first validation is the best, every later one worse."""

    def validation_step(self, batch, batch_idx):
        self.log("score", -float(self.global_step))
        return super().validation_step(batch, batch_idx)


def boring_trainer(checkpoint: ResumableModelCheckpoint, *callbacks, **options) -> lightning.Trainer:
    settings = dict(max_epochs=2, limit_train_batches=4, limit_val_batches=1, num_sanity_val_steps=0)
    return lightning.Trainer(
        **{**settings, **options},
        callbacks=[checkpoint, *callbacks],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def test_last_follows_every_validation_inside_the_epoch_while_the_best_stays_at_the_first(tmp_path):
    """Validation twice per epoch (steps 2, 4, 6, 8): checkpoints are taken after validation, not at the epoch's
    end, and `last.ckpt` is the step-8 state although the best is the step-2 one."""
    checkpoint = ResumableModelCheckpoint(dirpath=tmp_path, monitor="score", mode="max", save_last=True)
    boring_trainer(checkpoint, val_check_interval=0.5).fit(WorseEachValidation())
    assert sorted(os.listdir(tmp_path)) == ["epoch=0-step=2.ckpt", "last.ckpt"]
    assert read_checkpoint(tmp_path / "last.ckpt")["global_step"] == 8


def test_a_templated_last_name_is_filled_from_the_runs_metrics(tmp_path):
    """Lightning's `CHECKPOINT_NAME_LAST` may name metrics (`last-{step}`); the last file kept current and the one
    saved on an error both fill it in."""
    checkpoint = ResumableModelCheckpoint(dirpath=tmp_path / "kept", monitor="score", mode="max", save_last=True)
    checkpoint.CHECKPOINT_NAME_LAST = "last-{step}"
    boring_trainer(checkpoint, val_check_interval=0.5).fit(WorseEachValidation())
    assert sorted(os.listdir(tmp_path / "kept")) == ["epoch=0-step=2.ckpt", "last-step=8.ckpt"]

    checkpoint = ResumableModelCheckpoint(dirpath=tmp_path / "error", save_last=True, save_on_exception=True)
    checkpoint.CHECKPOINT_NAME_LAST = "last-{step}"
    with pytest.raises(RuntimeError, match="stopped at step 6"):
        boring_trainer(checkpoint, FailAtStep(6)).fit(BoringModel())
    assert "last-step=6.ckpt" in os.listdir(tmp_path / "error")

    checkpoint = ResumableModelCheckpoint(dirpath=tmp_path / "interrupted", save_last=False, save_on_exception=True)
    checkpoint.INTERRUPTED = "interrupted-{step}"
    with pytest.raises(RuntimeError, match="stopped at step 6"):
        boring_trainer(checkpoint, FailAtStep(6)).fit(BoringModel())
    assert sorted(os.listdir(tmp_path / "interrupted")) == ["epoch=0-step=4.ckpt", "interrupted-step=6.ckpt"]


def test_validating_or_a_sanity_check_writes_no_last_checkpoint(tmp_path):
    """Outside fitting (`trainer.validate`) and in the sanity check nothing is saved, as Lightning's own rule says."""
    checkpoint = ResumableModelCheckpoint(dirpath=tmp_path / "validate", monitor="score", mode="max", save_last=True)
    boring_trainer(checkpoint, val_check_interval=0.5).validate(WorseEachValidation())
    assert not (tmp_path / "validate").exists() or os.listdir(tmp_path / "validate") == []

    seen_at_start: list[list[str]] = []

    class ListAtTrainStart(lightning.Callback):
        def on_train_start(self, trainer, pl_module):
            seen_at_start.append(sorted(os.listdir(tmp_path / "fit")) if (tmp_path / "fit").exists() else [])

    checkpoint = ResumableModelCheckpoint(dirpath=tmp_path / "fit", monitor="score", mode="max", save_last=True)
    boring_trainer(checkpoint, ListAtTrainStart(), val_check_interval=0.5, num_sanity_val_steps=1).fit(
        WorseEachValidation()
    )
    assert seen_at_start == [[]]


def test_a_checkpoint_without_the_model_config_is_refused_before_lightning_tries_to_build_it(tmp_path):
    path = save(tmp_path / "plain.ckpt", {"state_dict": {"backbone.w": torch.ones(2)}})
    with pytest.raises(CheckpointError) as error:
        load_classifier(path)
    assert str(error.value) == (
        f"{path}: its hyperparameters do not say how to build the model (a checkpoint not written by `lit-vir fit`?). "
        "Give the model config with -c."
    )
