"""Every test image's outcome, kept with the run, so any later statistic needs no rerun.

A run's accuracy is a mean over images; intervals (a bootstrap over images), paired tests between two models on
the same images (McNemar) and per-class or per-corruption breakdowns need the images themselves. For every test
pass of a run — `test/*`, `test_last/*`, each cell of a corruption benchmark — this keeps each image's label, the
predicted class and the probability the model gave it, in one file per run: `test_predictions.npz`, arrays named
`<prefix>/<set>/<field>` (`test/label`, `test_last/prediction`, `test/gaussian_noise/s3/probability`), in the
test set's order.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import lightning as L
import numpy as np
import torch

__all__ = ["FILE", "TestPredictions", "read_predictions"]

FILE = "test_predictions.npz"
FIELDS = ("label", "prediction", "probability")
DTYPES = {"label": np.int16, "prediction": np.int16, "probability": np.float32}


def read_predictions(folder: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a run's `test_predictions.npz` ({} when the run kept none)."""
    path = Path(folder) / FILE
    if not path.is_file():
        return {}
    with np.load(path) as stored:
        return {name: stored[name] for name in stored.files}


def set_names(trainer: L.Trainer, count: int) -> list[str]:
    """A name per test loader: `<corruption>/s<severity>` on a corruption benchmark, else the split's."""
    cells = getattr(trainer.datamodule, "cells", None) if trainer.datamodule is not None else None
    if cells and len(cells) == count:
        return [f"{name}/s{severity}" for name, severity in cells]
    return [""] if count == 1 else [f"dataloader_{index}" for index in range(count)]


def in_dataset_order(values: torch.Tensor, world_size: int, size: int) -> torch.Tensor:
    """Rank r of a DistributedSampler (no shuffling) sees images r, r + W, r + 2W, ...: gathered (W, n), they
    interleave back into the test set's order; the sampler's padding (repeated images) is dropped."""
    return values.transpose(0, 1).reshape(-1)[:size] if world_size > 1 else values[:size]


class TestPredictions(L.Callback):
    """Collects each test batch's labels, predictions and the predicted class's probability (the module's
    `test_step` returns them), and writes them to the run folder's `test_predictions.npz` at the end of each test
    pass (gathered from every rank first)."""

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.collected: dict[int, dict[str, list[torch.Tensor]]] = {}

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        parts = self.collected.setdefault(dataloader_idx, {name: [] for name in FIELDS})
        parts["label"].append(outputs["labels"].detach())
        parts["prediction"].append(outputs["predictions"].detach())
        parts["probability"].append(outputs["probabilities"].detach().float())

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loaders = trainer.test_dataloaders
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        names = set_names(trainer, len(loaders))
        prefix = getattr(pl_module, "test_prefix", "test")
        arrays = {}
        for index, parts in sorted(self.collected.items()):
            size = len(loaders[index].dataset) if hasattr(loaders[index], "dataset") else None
            for field in FIELDS:
                values = torch.cat(parts[field])
                if trainer.world_size > 1:
                    values = trainer.strategy.all_gather(values)  # (W, n): the sampler gives every rank n
                values = in_dataset_order(values, trainer.world_size, size or values.numel())
                key = "/".join(part for part in (prefix, names[index], field) if part)
                arrays[key] = values.cpu().numpy().astype(DTYPES[field])
        if trainer.is_global_zero and arrays:
            folder = trainer.loggers[0].log_dir if trainer.loggers else trainer.default_root_dir
            if folder is not None:
                write_predictions(Path(folder), arrays)


def write_predictions(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """Add this pass's arrays to the run's file (replacing those of an earlier pass with the same names),
    atomically: a kill leaves the old file or the new one."""
    folder.mkdir(parents=True, exist_ok=True)
    merged = {**read_predictions(folder), **arrays}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **merged)
    temporary = folder / f".{FILE}.partial"
    temporary.write_bytes(buffer.getvalue())
    os.replace(temporary, folder / FILE)
