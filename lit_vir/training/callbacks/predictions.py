"""`lit-vir predict` → one CSV row per image, written once by rank zero however many processes predicted.

Per batch, each process keeps only its images' top-k classes and probabilities (not the whole softmax) with their
dataset indices; at the end of the epoch the rows of every process are gathered to rank zero, put in dataset order
and written through a temporary file renamed into place (no half-written CSV is left). The columns:

    image, label, correct, class_1, probability_1, ..., class_k, probability_k

`image` names the image (a file's path; the index in its split for the built-in datasets), `label` is its true
class where the data has one (empty otherwise: -1 labels), `correct` is 1 when the top class is the label. Where
there are labels, the accuracy (top-1 and top-k, over the labelled images) is printed and written with the counts
to `<output stem>.json`. `lit-vir predict` adds this callback unless the config has a prediction writer.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter
from rich.console import Console
from rich.table import Table

from lit_vir.atomic import write_text_atomically
from lit_vir.checks import check_range

__all__ = ["PredictionWriter"]

Row = tuple[int, int, str, int, list[int], list[float]]  # loader, index, image, label, top classes, probabilities


class PredictionWriter(BasePredictionWriter):
    """Writes `predictions.csv` (or `output`) with the `top_k` classes of every predicted image."""

    def __init__(self, output: str | None = None, top_k: int = 5) -> None:
        """
        Args:
            output: the CSV file; default: `predictions.csv` in the run's log folder (the working folder without a
                logger).
            top_k: classes (and probabilities) per row, at most the number of classes.
        """
        super().__init__(write_interval="batch")
        check_range(type(self).__name__, "top_k", top_k, low=1)
        self.output = output
        self.top_k = top_k
        self.rows: list[Row] = []
        self.written: Path | None = None

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows = []

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: torch.Tensor,
        batch_indices: list[int] | range | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Keep the batch's rows: `prediction` is the softmax (B, classes) of `ImageClassifier.predict_step`."""
        top = prediction.float().topk(min(self.top_k, prediction.shape[1]), dim=1)
        labels = batch[1].tolist()
        dataset = self.loader(trainer, dataloader_idx).dataset
        if batch_indices is None:  # a sampler Lightning cannot track: one process reading in order
            start = sum(row[0] == dataloader_idx for row in self.rows)
            batch_indices = range(start, start + len(labels))
        for row, index in enumerate(batch_indices):
            name = dataset.source(index) if hasattr(dataset, "source") else str(index)
            classes, probabilities = top.indices[row].tolist(), top.values[row].tolist()
            self.rows.append((dataloader_idx, index, name, int(labels[row]), classes, probabilities))

    @staticmethod
    def loader(trainer: L.Trainer, dataloader_idx: int) -> torch.utils.data.DataLoader:
        loaders = trainer.predict_dataloaders
        return loaders[dataloader_idx] if isinstance(loaders, (list, tuple)) else loaders

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows = self.gathered(trainer)
        if trainer.is_global_zero:
            names = getattr(trainer.datamodule, "class_names", None) or [str(i) for i in range(pl_module.num_classes)]
            self.written = self.write(sorted(rows, key=lambda row: row[:2]), list(names), self.target(trainer))

    def gathered(self, trainer: L.Trainer) -> list[Row]:
        """Every process's rows on rank zero (its own elsewhere): one gather, after the last batch."""
        if trainer.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
            return self.rows
        parts = [None] * trainer.world_size if trainer.is_global_zero else None
        dist.gather_object(self.rows, parts, dst=0)
        return [row for part in parts for row in part] if trainer.is_global_zero else self.rows

    def target(self, trainer: L.Trainer) -> Path:
        if self.output is not None:
            return Path(self.output)
        folder = trainer.loggers[0].log_dir if trainer.loggers else None
        return Path(folder or ".") / "predictions.csv"

    def write(self, rows: list[Row], names: list[str], path: Path) -> Path:
        k = min(self.top_k, len(names))
        header = ["image", "label", "correct"] + [
            f"{kind}_{rank}" for rank in range(1, k + 1) for kind in ("class", "probability")
        ]
        labelled = [row for row in rows if row[3] >= 0]
        lines = []
        for _, _, image, label, classes, probabilities in rows:
            known = label >= 0
            cells = [image, names[label] if known else "", int(classes[0] == label) if known else ""]
            for index, probability in zip(classes, probabilities, strict=True):
                cells += [names[index], f"{probability:.6g}"]
            lines.append(cells)
        table = io.StringIO()
        writer = csv.writer(table)
        writer.writerow(header)
        writer.writerows(lines)
        write_text_atomically(path, table.getvalue())
        summary = {"images": len(rows), "labelled": len(labelled), "top_k": k}
        if labelled:
            summary["accuracy"] = sum(row[4][0] == row[3] for row in labelled) / len(labelled)
            summary[f"top_{k}_accuracy"] = sum(row[3] in row[4] for row in labelled) / len(labelled)
        write_text_atomically(path.with_suffix(".json"), json.dumps(summary, indent=2) + "\n")
        report(summary, path)
        return path


def report(summary: dict[str, Any], path: Path) -> None:
    table = Table(title="Predictions")
    for name in summary:
        table.add_column(name, justify="right")
    table.add_row(*[f"{value:.4f}" if isinstance(value, float) else str(value) for value in summary.values()])
    console = Console()
    console.print(table)
    console.print(f"wrote {path} and {path.with_suffix('.json').name}")
