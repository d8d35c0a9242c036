"""An exponential moving average of the weights: Lightning's `EMAWeightAveraging`, with two fixes for lit_vir.

Validation and checkpoints see the average (Lightning swaps it in for validation and saves it as the checkpoint's
`state_dict`, the raw weights as `current_model_state`); at the end of fit the average replaces the weights, so
`test_last` tests it too. What this subclass changes:

- buffers are copied from the model, never averaged (`use_buffers=False` by default): averaging would move ViR's
  fixed W and V by rounding at every step and truncate integer buffers (the shuffled token order);
- the decay warms up, as TensorFlow's and timm's EMAs do: d_n = min(decay, (1 + n)/(10 + n)) at the n-th update,
  so the average forgets the random initial weights within tens of steps instead of ~1/(1 − decay) — without it a
  run of a few hundred steps at decay 0.999 validates weights that are still two-thirds their initialisation;
- a checkpoint loaded outside fit (`trainer.test(ckpt_path="best")` after fit, while the average still exists)
  keeps the averaged `state_dict`; Lightning's callback would load the raw `current_model_state` over it, so
  the "best" test would silently evaluate the raw weights. A resumed fit restores both, as Lightning does.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging

__all__ = ["ExponentialMovingAverage", "warmed_up_ema"]

WARMUP = 10  # d_n = min(decay, (1 + n)/(WARMUP + n))


def warmed_up_ema(decay: float):
    """AveragedModel's `avg_fn` for an EMA whose decay warms up: avg ← d_n·avg + (1 − d_n)·w."""

    @torch.no_grad()
    def update(average: torch.Tensor, current: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        rate = min(decay, (1.0 + float(updates)) / (WARMUP + float(updates)))
        return average.lerp(current, 1.0 - rate)

    return update


class ExponentialMovingAverage(EMAWeightAveraging):
    """EMA of the parameters (avg ← d_n·avg + (1 − d_n)·w after every optimiser step, d_n warming up to `decay`)."""

    def __init__(
        self,
        decay: float = 0.999,
        device: torch.device | str | int | None = None,
        use_buffers: bool = False,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        update_starting_at_epoch: int | None = None,
    ) -> None:
        super().__init__(
            device=device,
            use_buffers=use_buffers,
            decay=decay,
            update_every_n_steps=update_every_n_steps,
            update_starting_at_step=update_starting_at_step,
            update_starting_at_epoch=update_starting_at_epoch,
        )
        self._kwargs["avg_fn"] = warmed_up_ema(decay)  # the AveragedModel that `setup` builds takes these kwargs

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == "fit":
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
