"""ReViT's learned α in TensorBoard: how much of each block's own attention logits the model keeps.

configs/model/revit.yaml adds this callback; add it to any run with
`--trainer.callbacks+=lit_vir.training.callbacks.revit.AlphaLogger`.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn

__all__ = ["AlphaLogger"]


class AlphaLogger(L.Callback):
    """At each training epoch's end, log every scalar parameter of the backbone named `alpha` (ReViT's α,
    learnable or fixed) as `backbone/<its name>`, e.g. `backbone/alpha`."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        values = {
            f"backbone/{name}": parameter.detach().item()
            for name, parameter in pl_module.backbone.named_parameters()
            if name.rsplit(".", 1)[-1] == "alpha" and parameter.numel() == 1
        }
        if not values:
            rank_zero_warn(f"AlphaLogger: {type(pl_module.backbone).__name__} has no scalar parameter named alpha.")
        for name, value in values.items():
            pl_module.log(name, value, on_step=False, on_epoch=True)
