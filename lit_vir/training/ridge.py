"""`RidgeClassifier`: a ViR's reservoir with the classic echo-state readout, fitted in one pass in closed form.

A `lit-vir fit` configuration (`configs/readout/ridge.yaml`), not a tool of its own: a run is then checkpointed,
tested (`--test_after_fit`), logged and recorded (`config.yaml`, `environment.yaml`, TensorBoard `val/acc`,
`test/acc`, `params/*`, `perf/*`) exactly as a gradient-trained run, so `lit-vir compare` puts the two side by side
and every data option, callback and trainer setting applies unchanged.

The one epoch: `training_step` adds each batch's features to the normal equations (`lit_vir.models.ridge`;
no optimiser, no gradient); validation solves them for every λ of the grid (one Cholesky each), scores each
solution on the validation split and keeps the most accurate (ties: the larger λ, the smoother readout),
logged as `val/acc` with `ridge/lambda`; then the fit stops, whatever `max_epochs` says (a second pass would
add the same images again). The checkpoint holds the solved W and b; test, predict and a later validation
(`lit-vir validate`) use them as any model's weights.

Memory: the normal equations take 16·(F+1)² bytes in host memory (float64; F the feature width), checked against
the memory available (or `memory_limit_gib`) when the module is built — before any data is read.
"""

from __future__ import annotations

import os

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lit_vir.checks import ConfigError, check_choice, check_range
from lit_vir.models.counting import count_parameters
from lit_vir.models.ridge import (
    FeaturePooling,
    NormalEquations,
    feature_width,
    normal_equations_bytes,
    reservoir_features,
)
from lit_vir.models.vir import ViR
from lit_vir.training.module import ImageClassifier

__all__ = ["DEFAULT_RIDGES", "RidgeClassifier", "available_memory_bytes"]

DEFAULT_RIDGES = tuple(10.0**exponent for exponent in range(-8, 2))  # λ = 1e-8 … 10, relative (see models.ridge)


def available_memory_bytes() -> int:
    """Host memory a new allocation can take without swapping: Linux's MemAvailable (free + reclaimable cache),
    else the free pages."""
    try:
        with open("/proc/meminfo") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class RidgeClassifier(ImageClassifier):
    """A ViR backbone's tokens and reservoir states, pooled, read out by ridge regression solved in closed form."""

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int = 10,
        ridges: tuple[float, ...] = DEFAULT_RIDGES,
        pooling: FeaturePooling = "mean",
        memory_limit_gib: float | None = None,
    ) -> None:
        """
        Args:
            backbone: a parallel ViR (its embedding and reservoirs give the features; its trained readouts,
                MLPs and head are not used).
            num_classes: linked from the datamodule by the CLI.
            ridges: the grid of relative ridges λ > 0 tried on the validation split (β = λ·tr(Σ)/F).
            pooling: how [x_t ; h_t] is pooled over the tokens: mean, last, or flatten (T times wider).
            memory_limit_gib: refuse when the normal equations need more than this (default: the memory
                available now).
        """
        super().__init__(backbone, num_classes)
        owner = type(self).__name__
        if not isinstance(backbone, ViR):
            raise ConfigError(f"{owner}: the backbone is a {type(backbone).__name__}; the ridge readout reads a ViR.")
        check_choice(owner, "mode", backbone.mode, ("parallel",))  # serial cores read trained outputs
        check_choice(owner, "pooling", pooling, ("mean", "last", "flatten"))
        if not ridges:
            raise ConfigError(f"{owner}: ridges is empty; give at least one λ > 0, e.g. [1e-6, 1e-4, 1e-2].")
        for ridge in ridges:
            check_range(owner, "ridges (λ)", ridge, low=0, low_inclusive=False)
        self.automatic_optimization = False
        self.ridges = sorted(ridges)
        self.pooling = pooling
        self.width = feature_width(backbone, pooling)
        self.check_memory(memory_limit_gib)
        self.register_buffer("readout_weight", torch.zeros(self.width, num_classes, dtype=torch.float64))  # W
        self.register_buffer("readout_bias", torch.zeros(num_classes, dtype=torch.float64))  # b
        self.register_buffer("ridge", torch.tensor(float("nan"), dtype=torch.float64))  # the λ chosen
        self.equations: NormalEquations | None = None
        self.candidates: tuple[torch.Tensor, torch.Tensor] | None = None  # W (K, F, C), b (K, C) for the K ridges
        self.correct: torch.Tensor  # (K,) validation images each candidate gets right, set with the candidates
        self.seen: int  # validation images scored

    def check_memory(self, limit_gib: float | None) -> None:
        """Refuse, before any data is read, normal equations that would not fit in host memory."""
        needed = normal_equations_bytes(self.width)
        limit = available_memory_bytes() if limit_gib is None else int(limit_gib * 2**30)
        source = "available now" if limit_gib is None else "memory_limit_gib"
        if needed > limit:
            raise ConfigError(
                f"{type(self).__name__}: the normal equations of {self.width} features ({self.pooling} pooling of "
                f"[x_t ; h_t]) need 16·(F+1)² bytes = {needed / 2**30:.2f} GiB in float64, more than the "
                f"{limit / 2**30:.2f} GiB {source}. Use pooling 'mean' or 'last' (T times narrower), fewer nodes "
                "or cores, or a machine with more memory."
            )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, C), float64: the pooled features times the solved W, plus b."""
        features = reservoir_features(self.backbone, images, self.pooling)  # (B, F)
        return torch.addmm(self.readout_bias, features, self.readout_weight)

    def configure_optimizers(self) -> None:
        return None  # closed form: nothing steps

    def on_fit_start(self) -> None:
        """One process (the sums are not reduced across ranks); log the readout's size as the trainable count."""
        if self.trainer.world_size > 1:
            raise ConfigError(f"{type(self).__name__}: the ridge readout runs in one process; use --trainer.devices 1.")
        if not self.trainer.limit_val_batches:
            raise ConfigError(f"{type(self).__name__}: λ is chosen on the validation split; enable validation.")
        counts = count_parameters(self.backbone)
        embedding = sum(parameter.numel() for parameter in self.backbone.embedding.parameters())
        readout = self.readout_weight.numel() + self.readout_bias.numel()
        for logger in self.loggers:
            logger.log_metrics(
                {"params/trainable": readout + embedding, "params/frozen": embedding, "params/fixed": counts.fixed},
                step=0,
            )

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        if self.equations is None:
            self.equations = NormalEquations(self.width, self.num_classes)
        self.equations.add(reservoir_features(self.backbone, images, self.pooling).cpu(), labels.cpu())

    def on_validation_epoch_start(self) -> None:
        """Solve for every λ of the grid once the pass is done. Before it (the sanity check) and after it (the
        sums are freed once a λ is chosen) there is nothing to solve, and validation does nothing."""
        self.candidates = None
        if self.equations is None:
            return
        solutions = [self.equations.solve(ridge) for ridge in self.ridges]
        weights = torch.stack([weight for weight, _ in solutions]).to(self.device)  # (K, F, C)
        biases = torch.stack([bias for _, bias in solutions]).to(self.device)  # (K, C)
        self.candidates = (weights, biases)
        self.correct = torch.zeros(len(self.ridges), dtype=torch.int64)  # exact counts, at any split size
        self.seen = 0

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if self.candidates is None:
            if self.solved:  # `lit-vir validate` of a fitted readout: scored as any model
                super().validation_step(batch, batch_idx)
            return
        images, labels = batch
        weights, biases = self.candidates
        features = reservoir_features(self.backbone, images, self.pooling)  # (B, F)
        logits = torch.einsum("bf,kfc->kbc", features, weights) + biases[:, None]  # (K, B, C)
        self.correct += (logits.argmax(dim=-1) == labels).sum(dim=1).cpu()
        self.seen += len(labels)

    def on_validation_epoch_end(self) -> None:
        """Keep the most accurate λ (ties: the larger), log its accuracy as `val/acc`, and end the fit."""
        if self.candidates is None:
            if self.solved:
                super().on_validation_epoch_end()
            return
        accuracies = (self.correct.double() / self.seen).tolist()
        best = max(range(len(self.ridges)), key=lambda index: (accuracies[index], index))
        weights, biases = self.candidates
        self.readout_weight.copy_(weights[best])
        self.readout_bias.copy_(biases[best])
        self.ridge.fill_(self.ridges[best])
        # The solve is the run's one update: count it as Lightning counts optimiser steps, which its checkpointing
        # keys on (without a step the best checkpoint is never written) and `perf/optimizer_steps` reports.
        self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress.increment_completed()
        self.candidates = self.equations = None  # the solution is kept; free the (F+1)² sums
        for index, (ridge, accuracy) in enumerate(zip(self.ridges, accuracies, strict=True)):
            for logger in self.loggers:
                logger.log_metrics(
                    {"ridge/log10_lambda": float(torch.tensor(ridge).log10()), "ridge/val_acc": accuracy}, step=index
                )
        rank_zero_info(
            "RidgeClassifier: validation accuracy per λ: "
            + ", ".join(f"{ridge:g}: {accuracy:.4f}" for ridge, accuracy in zip(self.ridges, accuracies, strict=True))
            + f"; chose λ = {self.ridges[best]:g}"
        )
        if len(self.ridges) > 1 and best in (0, len(self.ridges) - 1):
            rank_zero_warn(
                f"RidgeClassifier: the chosen λ = {self.ridges[best]:g} is at the edge of the grid; widen it."
            )
        accuracy = torch.tensor(accuracies[best])
        self.val_acc_best.update(accuracy)
        self.log_dict(
            {"val/acc": accuracy, "val/acc_best": self.val_acc_best.compute(), "ridge/lambda": self.ridge.float()}
        )
        self.trainer.should_stop = True  # one pass: a second epoch would add the same images again

    def count_training_flops(self, images: torch.Tensor) -> int:
        """FLOPs of one training step on `images` (B, C, H, W): the features (embedding and reservoirs, forward
        only) and the update of the normal equations (A += [f;1]ᵀ[f;1]); read by `TrainingFlops`. The solves at the
        end — K Cholesky factorisations of (F+1)³/3 — are not per image and not counted."""
        scratch = NormalEquations(self.width, self.num_classes, device=images.device)
        labels = torch.zeros(images.shape[0], dtype=torch.int64, device=images.device)
        with FlopCounterMode(display=False) as counter:
            scratch.add(reservoir_features(self.backbone, images, self.pooling), labels)
        return counter.get_total_flops()

    @property
    def solved(self) -> bool:
        """Whether a λ has been chosen and W and b hold its solution (after the fit, or loaded from a checkpoint)."""
        return not bool(torch.isnan(self.ridge))

    def on_train_end(self) -> None:
        if not self.solved:
            raise ConfigError(
                f"{type(self).__name__}: the fit ended before validation solved the normal equations (a time or batch "
                "limit that stops the pass before its end?): the ridge readout needs its one epoch to end."
            )
