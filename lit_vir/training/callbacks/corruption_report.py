"""Turn a corruption benchmark's test run into the robustness report: table, files, TensorBoard."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from rich.console import Console

from lit_vir.robustness.metrics import CorruptionSummary, load_summary, summarize
from lit_vir.robustness.report import corruption_heatmap, corruption_table, write_corruption_files

__all__ = ["CorruptionReport"]


class CorruptionReport(L.Callback):
    """Counts correct predictions per (corruption, severity) cell of a datamodule with `cells` (e.g.
    `CorruptedDataModule`, `CIFAR10CDataModule`), then, on rank zero: prints a Rich table, writes
    `corruption_accuracy.csv`, `corruption_summary.json` and `corruption_heatmap.png`, and logs
    `robustness/*` scalars and the heat map to the logger. The CLI adds it to every `test` run on such a
    datamodule; add it yourself to set `reference` (a `corruption_summary.json` of the model to compare
    against, for CE and relative CE) or `output_dir` (default: the run's folder)."""

    def __init__(self, reference: str | None = None, output_dir: str | None = None) -> None:
        self.reference = reference
        self.output_dir = output_dir
        self.summary: CorruptionSummary | None = None
        self.cells: list[tuple[str, int]] = []

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.cells = list(getattr(trainer.datamodule, "cells", []))
        self.correct = torch.zeros(len(self.cells), dtype=torch.int64, device=pl_module.device)
        self.seen = torch.zeros_like(self.correct)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not self.cells:
            return
        self.correct[dataloader_idx] += (outputs["predictions"] == outputs["labels"]).sum()
        self.seen[dataloader_idx] += len(outputs["labels"])

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.cells:
            return
        correct = trainer.strategy.reduce(self.correct, reduce_op="sum")  # every rank takes part
        seen = trainer.strategy.reduce(self.seen, reduce_op="sum")
        if not trainer.is_global_zero:
            return
        accuracy = {cell: (c / max(n, 1)).item() for cell, c, n in zip(self.cells, correct, seen, strict=True)}
        reference = load_summary(self.reference) if self.reference else None
        self.summary = summarize(accuracy, reference, reference_name=self.reference)
        folder = Path(self.output_dir or (trainer.loggers[0].log_dir if trainer.loggers else trainer.default_root_dir))
        written = write_corruption_files(self.summary, folder)
        console = Console()
        console.print(corruption_table(self.summary))
        console.print("wrote " + ", ".join(str(path) for path in written))
        self.log_to(trainer)

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
