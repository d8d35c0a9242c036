"""Learning-rate schedules that can be written in a YAML config."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from lit_vir.checks import check_range

__all__ = ["WarmupCosineLR"]


class WarmupCosineLR(LambdaLR):
    """Linear warm-up to the base rate over `warmup` steps, then cosine decay to
    `min_lr_ratio`·base at `total` (timm's recipe for ViTs trained from scratch).

    A "step" is one scheduler step: an epoch or a batch, as the module's `scheduler_interval` says.
    `total: null` (the default) means the whole run: ImageClassifier fills in the trainer's max_epochs
    (or its estimated steps). Not `${trainer.max_epochs}` in a config: with jsonargparse 4.53 an
    interpolation there silently drops LightningCLI's links (a 1-channel dataset met a 3-channel model).
    """

    def __init__(
        self, optimizer: Optimizer, warmup: int = 5, total: int | None = None, min_lr_ratio: float = 0.0
    ) -> None:
        check_range(type(self).__name__, "warmup", warmup, low=0)
        check_range(type(self).__name__, "min_lr_ratio", min_lr_ratio, low=0, high=1)
        self.warmup = warmup
        self.min_lr_ratio = min_lr_ratio
        self.total: int | None = None
        if total is not None:
            self.span(total)
        super().__init__(optimizer, self.factor)

    def span(self, total: int) -> None:
        """Set the schedule's length (in scheduler steps), checked against the warm-up."""
        check_range(type(self).__name__, "total", total, low=1)
        check_range(type(self).__name__, "warmup", self.warmup, low=0, high=total, hint="warmup must not exceed total.")
        self.total = total

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if self.total is None:  # only LambdaLR's initial step with no warm-up, before `span`: the base rate
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
