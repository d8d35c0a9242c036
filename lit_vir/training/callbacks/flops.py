"""Training compute per run, so runs can be compared at equal FLOPs as well as at equal wall time.

At setup the callback counts the FLOPs of one training step's forward and backward per image
(`lit_vir.models.counting.training_flops`, on a copy of the backbone, for the datamodule's image shape);
every training epoch it logs `perf/train_flops_per_image` and the cumulative `perf/train_flops` (per image ×
images trained so far, all ranks), and at the end of fit the total as `perf/train_flops_total`. Augmentation,
batch mixing, the optimiser and the loss are not counted (they are the same for every model). The images seen
are saved in checkpoints, so a resumed run keeps counting.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from lit_vir.models.counting import training_flops

__all__ = ["TrainingFlops"]

EXAMPLE_BATCH = 2


class TrainingFlops(L.Callback):
    """Logs `perf/train_flops_per_image` and cumulative `perf/train_flops`; skipped (with nothing logged) when
    the datamodule does not say its image shape (`in_channels`, `image_size`)."""

    def __init__(self) -> None:
        self.flops_per_image: int | None = None
        self.images_seen = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        if stage != "fit" or not (hasattr(datamodule, "image_size") and hasattr(datamodule, "in_channels")):
            return
        size = datamodule.image_size
        images = torch.zeros(EXAMPLE_BATCH, datamodule.in_channels, size, size)
        num_classes = getattr(datamodule, "num_classes", 2)
        backbone = getattr(pl_module, "backbone", pl_module)
        images = images.to(pl_module.device)
        counter = getattr(pl_module, "count_training_flops", None)  # a module that trains otherwise than by backprop
        flops = counter(images) if counter is not None else training_flops(backbone, images, num_classes)
        self.flops_per_image = flops // EXAMPLE_BATCH

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.images_seen += len(batch[0]) * trainer.world_size

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.flops_per_image is None:
            return
        pl_module.log_dict(
            {
                "perf/train_flops_per_image": float(self.flops_per_image),
                "perf/train_flops": float(self.flops_per_image * self.images_seen),
            },
            rank_zero_only=True,
        )

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.flops_per_image is None:
            return
        for logger in trainer.loggers:
            logger.log_metrics(
                {"perf/train_flops_total": float(self.flops_per_image * self.images_seen)}, step=trainer.global_step
            )

    def state_dict(self) -> dict[str, Any]:
        return {"images_seen": self.images_seen}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.images_seen = state_dict["images_seen"]
