"""Wall time, throughput and peak memory of every training epoch, logged like any other metric.

`lit-vir compare` reads these back from the run's TensorBoard events (`perf/*`), so cost claims come
from the same runs as the accuracies.
"""

from __future__ import annotations

import resource
import time

import lightning as L
import torch

__all__ = ["ResourceMonitor", "peak_memory_mib"]


def peak_memory_mib(device: torch.device) -> float:
    """CUDA: the allocator's peak since the last reset; CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # Linux reports KiB


class ResourceMonitor(L.Callback):
    """Logs `perf/epoch_time_s` (training epoch, without validation), `perf/train_images_per_s`,
    `perf/peak_memory_mib` and, at the end of fit, how much work the run did: `perf/fit_time_s`,
    `perf/images_seen` (training images, every rank), `perf/optimizer_steps` and `perf/epochs_completed`
    (images seen / training-set size: fractional, so a time-budgeted run says how far it got, not which epoch
    it began). The totals are kept in checkpoints, so a resumed run reports the whole run's."""

    def __init__(self) -> None:
        self.images_seen = 0
        self.seconds_before = 0.0  # fit time of the attempts before a resume
        self.fit_started = time.perf_counter()

    def state_dict(self) -> dict[str, float]:
        return {"images_seen": self.images_seen, "fit_time_s": self.fit_seconds()}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.images_seen = int(state_dict.get("images_seen", 0))
        self.seconds_before = float(state_dict.get("fit_time_s", 0.0))

    def fit_seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.fit_started

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_started = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start_epoch(pl_module)  # a run resumed mid-epoch gets no on_train_epoch_start for that epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start_epoch(pl_module)

    def start_epoch(self, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self.images = 0
        self.epoch_started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.images += len(batch[0])
        self.images_seen += len(batch[0]) * trainer.world_size  # every rank takes a batch of the same size

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        seconds = time.perf_counter() - self.epoch_started
        pl_module.log_dict(
            {
                "perf/epoch_time_s": seconds,
                "perf/train_images_per_s": self.images * trainer.world_size / seconds,
                "perf/peak_memory_mib": peak_memory_mib(pl_module.device),
            },
            sync_dist=True,
            reduce_fx="max",
        )

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        totals = {
            "perf/fit_time_s": self.fit_seconds(),
            "perf/images_seen": self.images_seen,
            "perf/optimizer_steps": trainer.global_step,
        }
        size = training_set_size(trainer)
        if size:
            totals["perf/epochs_completed"] = self.images_seen / size
        for logger in trainer.loggers:
            logger.log_metrics(totals, step=trainer.global_step)


def training_set_size(trainer: L.Trainer) -> int | None:
    """Images in the training split (not the batches a `limit_train_batches` run took of it)."""
    loader = trainer.train_dataloader
    dataset = getattr(loader, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:  # an iterable dataset without a length
        return None
