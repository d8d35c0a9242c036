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
    `perf/peak_memory_mib` and, at the end of fit, `perf/fit_time_s`."""

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
        for logger in trainer.loggers:
            logger.log_metrics({"perf/fit_time_s": time.perf_counter() - self.fit_started}, step=trainer.global_step)
