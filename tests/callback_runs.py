"""A tiny LightningModule and a real Trainer run that logs to a CSVLogger: how the callback tests
(test_resources.py, test_flops_callback.py) get the numbers a callback logged, to check them by hand."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn


class Tiny(L.LightningModule):
    """Flatten, then Linear(4 → 3): inputs of 4 values (a 1×2×2 image, or a vector of 4), up to 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))

    def training_step(self, batch, batch_idx):
        images, labels = batch
        return nn.functional.cross_entropy(self.backbone(images), labels)

    def validation_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def logged_fit(folder: Path, callback: L.Callback, model: L.LightningModule, *loaders, datamodule=None, **options):
    """Fit `model` with `callback` and return the rows of the run's metrics.csv ([] if nothing was logged)."""
    trainer = L.Trainer(
        logger=CSVLogger(folder, name="run", version=0),
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **options,
    )
    trainer.fit(model, *loaders, datamodule=datamodule)
    table = folder / "run" / "version_0" / "metrics.csv"
    if not table.exists():
        return []
    with open(table) as stream:
        return list(csv.DictReader(stream))


def logged(rows: list[dict[str, str]], tag: str) -> list[float]:
    """The values of `tag`, in logging order."""
    return [float(row[tag]) for row in rows if row.get(tag)]
