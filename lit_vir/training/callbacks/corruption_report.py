"""Turn a corruption benchmark's test run into the robustness report: table, files, TensorBoard."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from rich.console import Console

from lit_vir.robustness.intervals import PairedCells, cell_outcomes, corruption_intervals, paired_corruptions
from lit_vir.robustness.metrics import CorruptionSummary, load_summary, summarize, with_intervals
from lit_vir.robustness.report import (
    corruption_heatmap,
    corruption_table,
    paired_table,
    write_corruption_files,
    write_paired_file,
)
from lit_vir.training.callbacks.test_predictions import in_dataset_order, read_predictions

__all__ = ["CorruptionReport"]


class CorruptionReport(L.Callback):
    """Keeps every image's outcome per (corruption, severity) cell of a datamodule with `cells` (e.g.
    `CorruptedDataModule`, `CIFAR10CDataModule`), then, on rank zero: prints a Rich table with each corruption's and
    the mean's 95% interval (a bootstrap over the test images, jointly across cells), writes
    `corruption_accuracy.csv` (every cell's interval), `corruption_summary.json` and `corruption_heatmap.png`, and
    logs `robustness/*` scalars and the heat map to the logger. The CLI adds it to every `test` run on such a
    datamodule; add it yourself to set `reference` (a `corruption_summary.json` of the model to compare against, for
    CE and relative CE), `paired_with` (the run folder of another checkpoint tested on the same corrupted images:
    the difference per cell and of the mean, with intervals and p-values, in `corruption_paired.csv`) or
    `output_dir` (default: the run's folder)."""

    def __init__(
        self, reference: str | None = None, output_dir: str | None = None, paired_with: str | None = None
    ) -> None:
        self.reference = reference
        self.output_dir = output_dir
        self.paired_with = paired_with
        self.summary: CorruptionSummary | None = None
        self.paired: PairedCells | None = None
        self.cells: list[tuple[str, int]] = []

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.cells = list(getattr(trainer.datamodule, "cells", []))
        self.outcomes: dict[int, list[torch.Tensor]] = {index: [] for index in range(len(self.cells))}
        self.labels: dict[int, list[torch.Tensor]] = {index: [] for index in range(len(self.cells))}

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not self.cells:
            return
        self.outcomes[dataloader_idx].append((outputs["predictions"] == outputs["labels"]).to(torch.int8))
        self.labels[dataloader_idx].append(outputs["labels"])

    def gathered(self, trainer: L.Trainer, parts: dict[int, list[torch.Tensor]]) -> list[np.ndarray]:
        """Every rank's values of each cell, in the test set's order (every rank takes part)."""
        loaders = trainer.test_dataloaders
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        found = []
        for index in range(len(self.cells)):
            values = torch.cat(parts[index])  # every cell has a batch: Lightning skips a test without any
            if trainer.world_size > 1:
                values = trainer.strategy.all_gather(values)
            size = len(loaders[index].dataset) if hasattr(loaders[index], "dataset") else values.numel()
            found.append(in_dataset_order(values, trainer.world_size, size).cpu().numpy())
        return found

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.cells:
            return
        outcomes, labels = self.gathered(trainer, self.outcomes), self.gathered(trainer, self.labels)
        if not trainer.is_global_zero:
            return
        pairs = zip(self.cells, outcomes, strict=True)
        accuracy = {cell: float(values.mean()) for cell, values in pairs}
        reference = load_summary(self.reference) if self.reference else None
        summary = summarize(accuracy, reference, reference_name=self.reference)
        matrix = np.stack(outcomes)  # (cells, N): the same N test images in every cell
        self.summary = with_intervals(summary, corruption_intervals(self.cells, [matrix]), matrix.shape[1])
        folder = Path(self.output_dir or (trainer.loggers[0].log_dir if trainer.loggers else trainer.default_root_dir))
        written = write_corruption_files(self.summary, folder)
        console = Console()
        console.print(corruption_table(self.summary))
        if self.paired_with:
            self.paired = self.pair(matrix, np.stack(labels))
            written.append(write_paired_file(self.paired, self.paired_with, folder))
            console.print(paired_table(self.paired, self.paired_with))
        console.print("wrote " + ", ".join(str(path) for path in written))
        self.log_to(trainer)

    def pair(self, matrix: np.ndarray, labels: np.ndarray) -> PairedCells:
        """This run against `paired_with`'s predictions on the same cells and images."""
        other_cells, other_matrix, other_labels = cell_outcomes(read_predictions(self.paired_with))
        if other_cells != self.cells or not np.array_equal(other_labels, labels):
            raise ValueError(
                f"CorruptionReport: paired_with = {self.paired_with} was not tested on the same corrupted images "
                f"(cells or labels differ): test both checkpoints with the same data config and limit_test_batches."
            )
        return paired_corruptions(self.cells, [matrix], [other_matrix])

    def log_to(self, trainer: L.Trainer) -> None:
        summary = self.summary
        scalars = {
            f"robustness/acc/{name}/s{severity}": accuracy
            for name, by_severity in summary.cells.items()
            for severity, accuracy in by_severity.items()
        }
        scalars |= {f"robustness/acc/{name}": accuracy for name, accuracy in summary.per_corruption.items()}
        for key, value in (
            ("robustness/clean_acc", summary.clean_accuracy),
            ("robustness/mean_corruption_acc", summary.mean_corruption_accuracy),
            ("robustness/mce", summary.mce),
            ("robustness/relative_mce", summary.relative_mce),
        ):
            if value is not None:
                scalars[key] = value
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=trainer.global_step)
            if isinstance(logger, TensorBoardLogger):
                figure = corruption_heatmap(summary)
                logger.experiment.add_figure("robustness/heatmap", figure, global_step=trainer.global_step)
