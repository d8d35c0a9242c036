"""One LightningModule that trains any backbone (ViR, ViT, the variants) for image classification.

The network is injected (`backbone`, a plain `nn.Module` built from the config), so the recipe —
loss, metrics, optimiser and its parameter groups, schedule, batch mixing, logging — is shared by every
architecture and one `model_step` serves training, validation and test. It knows no particular backbone
and no particular benchmark: DDP reservoir checks, corruption reports and resource logging are callbacks.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lit_vir.checks import check_choice, check_range
from lit_vir.models.counting import count_parameters
from lit_vir.training.guards import NonFiniteLossError, diagnose_non_finite
from lit_vir.training.mixing import BatchMixing
from lit_vir.training.rng import capture_rng_state, restore_rng_state
from lit_vir.training.schedulers import SpansTheRun
from lit_vir.training.weight_decay import parameter_groups

__all__ = ["ImageClassifier"]

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


def _keep_plain_data(hparams: MutableMapping[str, Any]) -> None:
    """Drop the hyperparameters built in Python rather than from a config (a backbone, an optimiser callable):
    their weights are in the state dict, and objects stored here would make the checkpoint need full unpickling
    to load."""
    for name in [name for name, value in hparams.items() if not _is_plain_data(value)]:
        hparams.pop(name)


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
        batch_mixing: BatchMixing | None = None,
    ) -> None:
        """
        Args:
            backbone: the network; in configs a `class_path` such as `lit_vir.models.ViR`.
            num_classes: linked from the datamodule by the CLI (an override here is ignored).
            optimizer: e.g. `torch.optim.AdamW`; default: the reference's Adam with lr 3e-4. Its
                weight_decay applies to the decayed group only (`lit_vir.training.weight_decay`).
            scheduler: e.g. `lit_vir.training.WarmupCosineLR`; default: constant learning rate.
            scheduler_interval: step the scheduler every `epoch` or every `step`.
            label_smoothing: cross-entropy label smoothing in [0, 1).
            batch_mixing: MixUp/CutMix of training batches (`lit_vir.training.BatchMixing`); the loss takes
                the soft targets, accuracy the hard labels.
        """
        super().__init__()
        check_range(type(self).__name__, "label_smoothing", label_smoothing, low=0, high=1, high_inclusive=False)
        check_choice(type(self).__name__, "scheduler_interval", scheduler_interval, ("epoch", "step"))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            self.save_hyperparameters()
        _keep_plain_data(self.hparams)
        self.backbone = backbone
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.label_smoothing = label_smoothing
        self.batch_mixing = batch_mixing
        self.num_classes = num_classes

        accuracy = {"acc": MulticlassAccuracy(num_classes, average="micro")}
        if num_classes > 5:
            accuracy["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        metrics = MetricCollection(accuracy)
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.metrics = metrics
        self.test_metrics = nn.ModuleList([metrics.clone()])  # one collection per test set, see on_test_epoch_start
        self.test_prefix = "test"  # set with `testing_as`
        self.val_acc_best = MaxMetric()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def model_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, logits, hard labels) of a batch; the loss is against `targets` (soft, (B, classes)) if given."""
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels if targets is None else targets, label_smoothing=self.label_smoothing)
        return loss, logits, labels

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        targets = None
        if self.batch_mixing is not None:
            images, targets = self.batch_mixing(*batch, self.num_classes)
            batch = (images, batch[1])
        loss, logits, labels = self.model_step(batch, targets)
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

    @contextmanager
    def testing_as(self, prefix: str) -> Iterator[None]:
        """Log the test metrics of the `trainer.test` calls inside as `<prefix>/*` (e.g. `test_last`)."""
        previous, self.test_prefix = self.test_prefix, prefix
        try:
            yield
        finally:
            self.test_prefix = previous

    def on_test_epoch_start(self) -> None:
        """A fresh metric collection per test loader: one shared collection would pool every loader's
        predictions into each loader's number."""
        loaders = self.trainer.test_dataloaders
        count = len(loaders) if isinstance(loaders, (list, tuple)) else 1
        self.test_metrics = nn.ModuleList([self.metrics.clone() for _ in range(count)]).to(self.device)

    def test_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, torch.Tensor]:
        """Loss and torchmetrics accuracy of each test set (Lightning suffixes `/dataloader_idx_k` when there
        are several); each image's prediction and the probability given to it are returned for callbacks such as
        `CorruptionReport` and `TestPredictions`."""
        loss, logits, labels = self.model_step(batch)
        metrics = self.test_metrics[dataloader_idx]
        metrics.update(logits, labels)
        self.log(f"{self.test_prefix}/loss", loss, on_epoch=True, sync_dist=True)
        self.log_dict({f"{self.test_prefix}/{name}": metric for name, metric in metrics.items()})
        predictions = logits.argmax(dim=-1)  # (B,)
        probabilities = logits.float().softmax(dim=-1).gather(1, predictions[:, None])[:, 0]  # (B,)
        return {"predictions": predictions, "labels": labels, "probabilities": probabilities}

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
        """An example input of the datamodule's image shape, so the model summary can count FLOPs."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "image_size"):
            size = datamodule.image_size
            self.example_input_array = torch.zeros(1, datamodule.in_channels, size, size)

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
        groups = parameter_groups(self.backbone)
        if self.optimizer_factory is None:
            optimizer = torch.optim.Adam(groups, lr=REFERENCE_LEARNING_RATE)
        else:
            optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        if isinstance(scheduler, SpansTheRun) and scheduler.needs_span():
            self.span_the_run(scheduler)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    def span_the_run(self, scheduler: SpansTheRun) -> None:
        """Size a run-long schedule: by `max_epochs` (or the steps they make), or — when `max_time` is the
        only limit (`max_epochs: -1`) — by the fraction of the time budget spent."""
        trainer = self.trainer
        timer = next((callback for callback in trainer.callbacks if isinstance(callback, Timer)), None)
        if trainer.max_epochs in (None, -1) and timer is not None and timer.time_remaining() is not None:
            scheduler.span_time(timer.time_elapsed() + timer.time_remaining(), timer.time_elapsed)
        elif self.scheduler_interval == "epoch":
            scheduler.span(trainer.max_epochs)
        else:
            scheduler.span(int(trainer.estimated_stepping_batches))
