"""An exponential moving average of the weights: Lightning's `EMAWeightAveraging`, with two fixes for lit_vir.

Validation and checkpoints see the average (Lightning swaps it in for validation and saves it as the checkpoint's
`state_dict`, the raw weights as `current_model_state`); at the end of fit the average replaces the weights, so
`test_last` tests it too. What this subclass changes:

- buffers are copied from the model, never averaged (`use_buffers=False` by default): averaging would move ViR's
  fixed W and V by rounding at every step and truncate integer buffers (the shuffled token order);
- a checkpoint loaded outside fit (`trainer.test(ckpt_path="best")` after fit, while the average still exists)
  keeps the averaged `state_dict`; Lightning's callback would load the raw `current_model_state` over it, so
  the "best" test would silently evaluate the raw weights. A resumed fit restores both, as Lightning does.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging

__all__ = ["ExponentialMovingAverage"]


class ExponentialMovingAverage(EMAWeightAveraging):
    """EMA of the parameters (decay d: avg ← d·avg + (1 − d)·w after every optimiser step)."""

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

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == "fit":
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
