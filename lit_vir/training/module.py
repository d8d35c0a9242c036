"""One LightningModule that trains any backbone (ViR, ViT, the variants) for image classification.

The network is injected (`backbone`, a plain `nn.Module` built from the config), so the recipe —
loss, metrics, optimiser, schedule, logging — is shared by every architecture and one `model_step`
serves training, validation and test.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lit_vir.checks import check_choice, check_range
from lit_vir.models.counting import count_parameters
from lit_vir.training.guards import (
    NonFiniteLossError,
    diagnose_non_finite,
    reservoir_checksum,
    verify_same_reservoirs,
)
from lit_vir.training.rng import capture_rng_state, restore_rng_state

__all__ = ["ImageClassifier"]

log = logging.getLogger(__name__)

REFERENCE_LEARNING_RATE = 3e-4


def _is_plain_data(value: Any) -> bool:
    """Whether a hyperparameter can be stored in a checkpoint that loads without unpickling code."""
    if isinstance(value, (str, int, float, bool, type(None))):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain_data(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_plain_data(item) for key, item in value.items())
    return False


class ImageClassifier(L.LightningModule):
    """Cross-entropy classification of images with any backbone that maps (B, C, H, W) → (B, classes)."""

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int = 10,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        label_smoothing: float = 0.0,
    ) -> None:
        """
        Args:
            backbone: the network; in configs a `class_path` such as `lit_vir.models.ViR`.
            num_classes: linked from the datamodule by the CLI (an override here is ignored).
            optimizer: e.g. `torch.optim.AdamW`; default: the reference's Adam with lr 3e-4.
            scheduler: e.g. `lit_vir.training.WarmupCosineLR`; default: constant learning rate.
            scheduler_interval: step the scheduler every `epoch` or every `step`.
            label_smoothing: cross-entropy label smoothing in [0, 1).
        """
        super().__init__()
        check_range(type(self).__name__, "label_smoothing", label_smoothing, low=0, high=1, high_inclusive=False)
        check_choice(type(self).__name__, "scheduler_interval", scheduler_interval, ("epoch", "step"))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            self.save_hyperparameters()
        for name in [name for name, value in self.hparams.items() if not _is_plain_data(value)]:
            # Built in Python rather than from a config: the weights are in the state dict, and objects
            # stored here would make the checkpoint need full unpickling to load.
            self.hparams.pop(name)
        self.backbone = backbone
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.label_smoothing = label_smoothing

        accuracy = {"acc": MulticlassAccuracy(num_classes, average="micro")}
        if num_classes > 5:
            accuracy["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        metrics = MetricCollection(accuracy)
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone()
        self.test_prefix = "test"  # `--test_after_fit` tests the last weights as `test_last/*` too
        self.val_acc_best = MaxMetric()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def model_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return loss, logits, labels

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, logits, labels = self.model_step(batch)
        self.stop_on_non_finite(loss, batch[0])
        self.train_metrics.update(logits, labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, logits, labels = self.model_step(batch)
        self.val_metrics.update(logits, labels)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc_best.update(self.val_metrics["acc"].compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)

    @property
    def testing_several_sets(self) -> bool:
        loaders = self.trainer.test_dataloaders if self._trainer is not None else None
        return isinstance(loaders, (list, tuple)) and len(loaders) > 1

    def test_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, torch.Tensor]:
        """One test set: loss and torchmetrics accuracy. Several (a corruption benchmark's cells): the
        predictions go to `CorruptionReport`, which reports every cell in one table."""
        loss, logits, labels = self.model_step(batch)
        if not self.testing_several_sets:
            self.test_metrics.update(logits, labels)
            self.log(f"{self.test_prefix}/loss", loss, on_epoch=True, sync_dist=True)
            self.log_dict({f"{self.test_prefix}/{name}": metric for name, metric in self.test_metrics.items()})
        return {"predictions": logits.argmax(dim=-1), "labels": labels}

    def predict_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> torch.Tensor:
        images, _ = batch
        return self(images).softmax(dim=-1)

    def stop_on_non_finite(self, loss: torch.Tensor, images: torch.Tensor) -> None:
        """Raise NonFiniteLossError on every rank if the loss is NaN/Inf on any rank (no rank is left
        waiting in a collective)."""
        bad = not bool(torch.isfinite(loss))
        if self._trainer is not None and self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            raise NonFiniteLossError(diagnose_non_finite(self.backbone, images, loss, self.global_step))

    def setup(self, stage: str) -> None:
        """Verify that every rank built the same reservoirs (they are drawn from the seed on each rank)."""
        checksum = reservoir_checksum(self.backbone)
        log.info("rank %d: reservoir checksum %016x", self.global_rank, checksum)
        if self.trainer.world_size == 1:
            return
        gathered = self.trainer.strategy.all_gather(torch.tensor(checksum, dtype=torch.int64, device=self.device))
        verify_same_reservoirs([int(value) for value in gathered.flatten().tolist()])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = capture_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """When fit resumes, continue the random streams where the interrupted run left them."""
        if self._trainer is not None and self.trainer.state.fn == "fit" and "rng_states" in checkpoint:
            restore_rng_state(checkpoint["rng_states"])

    def on_fit_start(self) -> None:
        counts = count_parameters(self.backbone)
        for logger in self.loggers:
            logger.log_metrics(
                {"params/trainable": counts.trainable, "params/frozen": counts.frozen, "params/fixed": counts.fixed},
                step=0,
            )

    def configure_optimizers(self) -> Any:
        parameters = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_factory is None:
            optimizer = torch.optim.Adam(parameters, lr=REFERENCE_LEARNING_RATE)
        else:
            optimizer = self.optimizer_factory(parameters)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        if getattr(scheduler, "total", 0) is None:  # WarmupCosineLR over the whole run
            epochs = self.scheduler_interval == "epoch"
            scheduler.span(self.trainer.max_epochs if epochs else int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}
