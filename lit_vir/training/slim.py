"""The Lightning side of ViT-Slim (Chavan et al. 2022): the search phase's module and the fine-tune warm start.

    1. train    lit-vir fit  -c configs/vir.yaml -c configs/model/vit_small.yaml -c DATA
    2. search   lit-vir fit  -c configs/vir.yaml -c configs/model/vit_small.yaml -c DATA -c configs/slim/search.yaml
                             --model.init_from <phase-1 checkpoint>
    3. slim     lit-vir slim <phase-2 checkpoint> --budget 0.5 0.7 --out slim/
    4. tune     lit-vir fit  -c configs/vir.yaml -c DATA -c slim/slim-b0.50.yaml

`SlimSearch` is the `ImageClassifier` of phase 2: its loss adds the backbone's mask sparsity term to the
cross-entropy, it can train the masks alone, and it logs each mask type's sparsity and histogram.
`WarmStart` is the callback the slim command's config piece adds for phase 4.

Where a run's first weights come from (`init_from`, `WarmStart`) is read once, when `fit` starts a new run —
never when a checkpoint is resumed or loaded with `load_classifier` — so every checkpoint carries its
architecture as plain data and its weights, and loads on its own.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from lit_vir.checks import ConfigError, check_range
from lit_vir.models.vit_slim import SearchableViT
from lit_vir.training.checkpoints import CheckpointError, read_checkpoint
from lit_vir.training.module import ImageClassifier

__all__ = ["SlimSearch", "WarmStart", "backbone_weights"]

log = logging.getLogger(__name__)


def backbone_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The backbone's state dict inside a lit-vir checkpoint (its `backbone.*` entries), read weights-only."""
    state = read_checkpoint(path)["state_dict"]
    weights = {name.removeprefix("backbone."): value for name, value in state.items() if name.startswith("backbone.")}
    if not weights:
        raise CheckpointError(f"{path}: holds no backbone weights (no 'backbone.*' entries); not a lit-vir checkpoint.")
    return weights


class SlimSearch(ImageClassifier):
    """ViT-Slim's search phase: cross-entropy + w1·Σ|ζ_attn| + w2·Σ|ζ_mlp| + w3·Σ|ζ_tok| on a `SearchableViT`.

    Logs `train/cross_entropy` and `train/sparsity_loss` (their sum is `train/loss`), and at each training
    epoch's end, per mask type (attention, mlp, token): `masks/<type>_sparsity` (the fraction of |ζ| below
    `sparsity_threshold`), `masks/<type>_mean` (mean |ζ|) and a TensorBoard histogram `masks/<type>`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        init_from: str | None = None,
        masks_only: bool = False,
        train_norms: bool = False,
        sparsity_threshold: float = 0.1,
        **kwargs,
    ) -> None:
        """
        Args:
            backbone: a `lit_vir.models.SearchableViT` (compose configs/slim/search.yaml after the model piece).
            init_from: the trained ViT's checkpoint (phase 1); its weights are copied in when `fit` starts a new
                run. Leave it empty when the backbone was built from trained weights in Python (`from_vit`).
            masks_only: train the masks alone, the ViT's weights frozen (default: weights and masks jointly).
            train_norms: with `masks_only`, train the LayerNorms too — the original's `--freeze_weights`, which
                keeps every parameter named "zeta" or "norm" trainable (default: the masks alone).
            sparsity_threshold: |ζ| below this counts as pruned in the logged sparsity.
            **kwargs: `ImageClassifier`'s (num_classes, optimizer, scheduler, label_smoothing, ...).
        """
        super().__init__(backbone, **kwargs)
        owner = type(self).__name__
        if not isinstance(backbone, SearchableViT):
            raise ConfigError(
                f"{owner}: the backbone must be a lit_vir.models.SearchableViT, got {type(backbone).__name__}; "
                "compose configs/slim/search.yaml after the model piece the ViT was trained with."
            )
        check_range(owner, "sparsity_threshold", sparsity_threshold, low=0, low_inclusive=False)
        self.init_from = init_from
        self.sparsity_threshold = sparsity_threshold
        self.initialised = False
        if masks_only:
            norms = {f"{module}." for module, layer in backbone.named_modules() if isinstance(layer, nn.LayerNorm)}
            for name, parameter in backbone.named_parameters():
                is_norm = train_norms and any(name.startswith(prefix) for prefix in norms)
                parameter.requires_grad = name in SearchableViT.MASK_PARAMETERS or is_norm

    def load_initial_weights(self) -> None:
        """Copy the trained ViT of `init_from` into the backbone (the masks keep their initial values)."""
        try:
            self.backbone.load_vit_weights(backbone_weights(self.init_from))
        except ConfigError as error:
            raise CheckpointError(f"{self.init_from}: {error}") from None
        self.initialised = True
        log.info("search starts from the ViT weights of %s", self.init_from)

    def on_fit_start(self) -> None:
        if not self.initialised and self.trainer.ckpt_path is None:
            if self.init_from is not None:
                self.load_initial_weights()
            else:
                rank_zero_warn(
                    "SlimSearch: no init_from, so the search starts from the backbone's current weights: right for a "
                    "backbone built with SearchableViT.from_vit; from a config, name the phase-1 checkpoint with "
                    "--model.init_from."
                )
        super().on_fit_start()

    def model_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loss, logits, labels = super().model_step(batch, targets)
        if self.training:
            sparsity = self.backbone.sparsity_loss()
            self.log("train/cross_entropy", loss, on_step=False, on_epoch=True)
            self.log("train/sparsity_loss", sparsity, on_step=False, on_epoch=True)
            loss = loss + sparsity
        return loss, logits, labels

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        for kind, values in self.backbone.masks().items():
            values = values.detach().float()
            self.log(f"masks/{kind}_sparsity", (values.abs() < self.sparsity_threshold).float().mean())
            self.log(f"masks/{kind}_mean", values.abs().mean())
            for logger in self.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_histogram(f"masks/{kind}", values.cpu(), global_step=self.global_step)


class WarmStart(L.Callback):
    """Start `fit` from the backbone weights of a checkpoint (e.g. the slim model written by `lit-vir slim`).

    The weights are copied in once, when `fit` starts a new run; a resumed run (`--ckpt_path`) keeps its own.
    The run's checkpoints hold the architecture and the weights, so they load without this file.
    """

    def __init__(self, checkpoint: str) -> None:
        self.checkpoint = checkpoint
        self.applied = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.applied or trainer.ckpt_path is not None:
            return
        try:
            pl_module.backbone.load_state_dict(backbone_weights(self.checkpoint))
        except RuntimeError as error:
            if isinstance(error, CheckpointError):
                raise
            raise CheckpointError(
                f"{self.checkpoint}: its backbone weights do not fit the configured "
                f"{type(pl_module.backbone).__name__} ({str(error).splitlines()[-1].strip()}). Compose the config "
                "piece written next to this checkpoint, with the dataset the model was slimmed on."
            ) from None
        self.applied = True
        log.info("fit starts from the backbone weights of %s", self.checkpoint)
