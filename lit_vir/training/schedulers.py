"""Learning-rate schedules that can be written in a YAML config, and the interface that sizes them to the run."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from lit_vir.checks import check_range

__all__ = ["SpansTheRun", "WarmupCosineLR"]


@runtime_checkable
class SpansTheRun(Protocol):
    """A schedule whose length is the run's. Before training, `ImageClassifier` calls exactly one of:

    - `span(total)`: the run's length in scheduler steps (epochs or batches), from `trainer.max_epochs`;
    - `span_time(seconds, elapsed)`: a run limited by `trainer.max_time` only (`max_epochs: -1`), whose length
      in steps is unknown in advance: progress is the fraction of the time budget spent, `elapsed()/seconds`.
    """

    def needs_span(self) -> bool: ...

    def span(self, total: int) -> None: ...

    def span_time(self, seconds: float, elapsed: Callable[[], float]) -> None: ...


class WarmupCosineLR(LambdaLR):
    """Linear warm-up to the base rate over `warmup` steps, then cosine decay to
    `min_lr_ratio`·base at the end of the run (timm's recipe for ViTs trained from scratch).

    A "step" is one scheduler step: an epoch or a batch, as the module's `scheduler_interval` says.
    `total: null` (the default) means the whole run (`SpansTheRun`): the trainer's max_epochs (or its
    estimated steps), or, for a time-budgeted run, the fraction of `max_time` spent. Not
    `${trainer.max_epochs}` in a config: with jsonargparse 4.53 an interpolation there silently drops
    LightningCLI's links (a 1-channel dataset met a 3-channel model).
    """

    def __init__(
        self, optimizer: Optimizer, warmup: int = 5, total: int | None = None, min_lr_ratio: float = 0.0
    ) -> None:
        check_range(type(self).__name__, "warmup", warmup, low=0)
        check_range(type(self).__name__, "min_lr_ratio", min_lr_ratio, low=0, high=1)
        self.warmup = warmup
        self.min_lr_ratio = min_lr_ratio
        self.total: int | None = None
        self.budget: tuple[float, Callable[[], float]] | None = None
        if total is not None:
            self.span(total)
        super().__init__(optimizer, self.factor)

    def needs_span(self) -> bool:
        return self.total is None and self.budget is None

    def span(self, total: int) -> None:
        """Set the schedule's length (in scheduler steps), checked against the warm-up."""
        check_range(type(self).__name__, "total", total, low=1)
        check_range(type(self).__name__, "warmup", self.warmup, low=0, high=total, hint="warmup must not exceed total.")
        self.total = total

    def span_time(self, seconds: float, elapsed: Callable[[], float]) -> None:
        """Decay over a time budget: after the warm-up steps, progress = elapsed() / seconds."""
        check_range(type(self).__name__, "time budget (s)", seconds, low=0, low_inclusive=False)
        self.budget = (seconds, elapsed)

    def state_dict(self) -> dict[str, Any]:
        """LambdaLR's state without the time budget's clock (a trainer's bound method): `span_time` is called
        again before a resumed run loads this state."""
        return {key: value for key, value in super().state_dict().items() if key != "budget"}

    def progress(self, step: int) -> float | None:
        """Fraction of the decay done at `step` (after the warm-up), or None while the length is unknown."""
        if self.total is not None:
            return (step - self.warmup) / max(1, self.total - self.warmup)
        if self.budget is not None:
            seconds, elapsed = self.budget
            return elapsed() / seconds
        return None

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        progress = self.progress(step)
        if progress is None:  # only LambdaLR's initial step with no warm-up, before the span: the base rate
            return 1.0
        progress = min(1.0, progress)
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
