"""Checkpoints that are written atomically and read without running code from them.

Every load path of lit_vir (the CLI's `--ckpt_path`, the analysis and robustness commands, notebooks)
goes through `read_checkpoint`, which unpickles with `weights_only=True` and turns the ways a file can be
wrong — missing, truncated, not a checkpoint, carrying code — into one clear `CheckpointError`.
"""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lit_vir.training.guards import NonFiniteLossError

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointError",
    "ResumableModelCheckpoint",
    "best_checkpoint",
    "load_classifier",
    "model_config",
    "read_checkpoint",
    "saved_preprocessing",
]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot (or must not) be loaded."""


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a Lightning checkpoint with weights-only unpickling; raise CheckpointError with the reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused to load: it holds Python objects beyond tensors and plain data, which could run "
            f"code when unpickled (weights-only loading). Only load checkpoints you trust. Detail: "
            f"{str(error).splitlines()[0]}"
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(
            f"{path}: not a readable checkpoint — truncated (an interrupted copy?) or not written by torch.save "
            f"({type(error).__name__}: {str(error).splitlines()[0]})."
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        kind = type(checkpoint).__name__
        raise CheckpointError(f"{path}: a torch file but not a Lightning checkpoint (a {kind} without 'state_dict').")
    return checkpoint


def best_checkpoint(run: str | Path) -> Path:
    """The best-validation checkpoint of a `lit-vir fit` run folder, as its ModelCheckpoint recorded it in
    `last.ckpt` (not the first `epoch*.ckpt` on disk: runs written before lit_vir kept interruption checkpoints out of
    the top-k names may hold a stray one). Looked up in the run's own `checkpoints/`, so a moved folder works."""
    folder = Path(run) / "checkpoints"
    last = read_checkpoint(folder / "last.ckpt")
    recorded = [
        state.get("best_model_path")
        for name, state in (last.get("callbacks") or {}).items()
        if "ModelCheckpoint" in name and isinstance(state, dict) and state.get("best_model_path")
    ]
    if not recorded:
        raise CheckpointError(f"{folder / 'last.ckpt'}: records no best checkpoint (no validation ran before it).")
    best = folder / Path(recorded[0]).name
    if not best.is_file():
        raise CheckpointError(f"{best}: the best checkpoint that {folder / 'last.ckpt'} records is missing.")
    return best


def load_classifier(path: str | Path, map_location: Any = "cpu"):
    """The `ImageClassifier` of a checkpoint written by `lit-vir fit`, rebuilt from its saved config — as the
    subclass it was trained as (`RidgeClassifier`) when that class is already imported: Lightning's own loading
    drops the checkpoint's `_class_path` for a base class without **kwargs and would build the base."""
    from lit_vir.training.module import ImageClassifier  # the module imports this file

    checkpoint = read_checkpoint(path, map_location)  # clear errors before Lightning's own loading
    module_path, _, name = str(model_config(checkpoint, path)["class_path"]).rpartition(".")
    module_class = getattr(sys.modules.get(module_path), name, None)  # never imports code named by a file
    if not (isinstance(module_class, type) and issubclass(module_class, ImageClassifier)):
        module_class = ImageClassifier
    return module_class.load_from_checkpoint(path, map_location=map_location, weights_only=True)


def saved_preprocessing(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """How the checkpoint's model reads images (`ImageDataModule.preprocessing`), from the datamodule's state that
    Lightning saves under the datamodule's class name; CheckpointError for a checkpoint without it."""
    for value in checkpoint.values():
        if isinstance(value, dict) and isinstance(value.get("preprocessing"), dict):
            return value["preprocessing"]
    raise CheckpointError(
        f"{path}: holds no preprocessing record (class names, image size, normalisation): it was written before "
        "lit_vir saved one, or without a lit_vir datamodule. Give the data config it was trained with (-c config.yaml "
        "of its run)."
    )


def model_config(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The model section (`class_path`, `init_args`) that `lit-vir fit` built the checkpoint's model from, as
    LightningCLI saves it in the hyperparameters; CheckpointError for one not written by `lit-vir fit`."""
    hyperparameters = checkpoint.get("hyper_parameters") or {}
    if "_class_path" not in hyperparameters or not isinstance(hyperparameters.get("backbone"), dict):
        raise CheckpointError(
            f"{path}: its hyperparameters do not say how to build the model (a checkpoint not written by "
            "`lit-vir fit`?). Give the model config with -c."
        )
    init_args = {name: value for name, value in hyperparameters.items() if not name.startswith("_")}
    return {"class_path": hyperparameters["_class_path"], "init_args": init_args}


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the target folder, flush it to disk, then rename it into place:
    a kill at any moment leaves the old checkpoint or the new one, never half a file. Loads are
    weights-only with clear errors."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options, got {storage_options!r}.")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        try:
            with os.fdopen(handle, "wb") as stream:
                torch.save(checkpoint, stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def load_checkpoint(self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None):
        return read_checkpoint(path, map_location if map_location is not None else "cpu")


class ResumableModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that, with `save_on_exception`, saves a resumable checkpoint when a run is
    interrupted (SIGTERM, Ctrl-C, a pruned sweep trial, any error) — except when the weights went non-finite: a NaN
    checkpoint would replace the last good `last.ckpt` with one that cannot be resumed."""

    INTERRUPTED = "interrupted"  # the file name when `save_last` is off

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """Save where the run stopped as `last.ckpt` (or `interrupted.ckpt`), never under the top-k name: Lightning
        writes `epoch…-val_acc….ckpt` there, outside its top-k bookkeeping, so the file outlives every later better
        checkpoint and reads as a best one — `val_acc0.0000` when it stopped before its first validation."""
        if isinstance(exception, NonFiniteLossError) or not self._should_save_on_exception(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        if self.save_last:
            self._save_last_checkpoint(trainer, candidates)
        else:
            self._save_checkpoint(trainer, self.format_checkpoint_name(candidates, self.INTERRUPTED))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self.keep_last_current(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self.keep_last_current(trainer)

    def keep_last_current(self, trainer) -> None:
        """Write `last.ckpt` at every checkpoint opportunity. Lightning 2.6 writes it only when a top-k
        checkpoint was written at the same step, so with `save_top_k=1` it stays at the best epoch —
        then `--ckpt_path last` would resume from there and `test_last` would test the best weights."""
        if not self.save_last or self._should_skip_saving_checkpoint(trainer):
            return  # also when something (top-k and with it `last`) was already saved at this step
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
