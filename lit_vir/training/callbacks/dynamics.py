"""Reservoir dynamics of a ViR in TensorBoard while it trains (spec `vir.md`, "Dynamics").

Once, at fit start — they depend on W alone, which never trains —, per reservoir core: the spectral
radius and a figure of the spectrum with the unit circle, the memory capacity and its MC_k curve, and
the small-world measures of the weighted and strongest-edges graphs. At fit start and every
`every_n_epochs` training epochs: the largest Lyapunov exponent (Jacobian and perturbation methods), the
state statistics and a heat map of the states over the tokens of one image, all driven by the tokens
that core really reads for a fixed batch of validation images (serial cores read the previous core's
outputs, which change as it trains). Names: `dynamics/core<i>/<field>` (fields of
`lit_vir.analysis.report`), figures `dynamics/core<i>/{spectrum,memory,states}`.

Cost per reservoir at N = 1000, measured on one CPU core: about 11 s once (spectrum 0.7 s, memory capacity
3 s, small-world 7 s) and 4 s per logging epoch (Lyapunov, states). The budgets are the init arguments;
`lit_vir.analysis` documents each. Add it to a run with `--trainer.callbacks+=configs/callbacks/dynamics.yaml`.

Distributed training: everything runs on global rank zero only and uses no collective (no
`LightningModule.log`, no barrier, the plain backbone rather than the DDP wrapper), so the other ranks
simply wait at their next collective for the time of one analysis and can never deadlock. The
callback draws no global random numbers (its own seeded generators; loading the images runs under
`torch.random.fork_rng`), so a run trains identically with or without it.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_helpers import is_overridden
from matplotlib.figure import Figure

from lit_vir.analysis.cores import ReservoirCore, reservoir_cores
from lit_vir.analysis.figures import figure_to_array, memory_figure, spectrum_figure, states_figure
from lit_vir.analysis.report import (
    AnalysisSettings,
    core_drive,
    lyapunov_fields,
    memory_fields,
    small_world_fields,
    state_fields,
)
from lit_vir.analysis.spectrum import eigenvalue_spectrum, spectral_radius
from lit_vir.analysis.states import run_reservoir
from lit_vir.models.vir import ViR

__all__ = ["ReservoirDynamics"]

# The small-world fields worth a curve: C, L, σ, ω of both graphs (the references stay in `lit-vir dynamics`).
SMALL_WORLD_SCALARS = tuple(
    f"{graph}_{measure}"
    for graph in ("weighted", "strongest")
    for measure in ("clustering", "path_length", "sigma", "omega")
)


class ReservoirDynamics(L.Callback):
    """Log the dynamics of every reservoir of a ViR backbone; skip other backbones with one info message."""

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_images: int = 8,
        memory: bool = True,
        small_world: bool = True,
        figures: bool = True,
        **settings: Any,
    ) -> None:
        """
        Args:
            every_n_epochs: log the driven measures after every n-th training epoch (and at fit start).
            num_images: validation images whose tokens drive the reservoirs (the first of the split).
            memory: log the memory capacity (once; O(12,000·N²) plus one N×N solve per core).
            small_world: log the small-world measures (once; O(N³) per graph and reference).
            figures: log the spectrum, MC_k and state heat-map figures (TensorBoard only).
            settings: the analyses' budgets and seed, `lit_vir.analysis.report.AnalysisSettings` fields (e.g.
                jacobian_samples, max_delay, strongest_edges, path_sources, seed), with its defaults.
        """
        super().__init__()
        if every_n_epochs < 1 or num_images < 1:
            raise ValueError(
                f"ReservoirDynamics: every_n_epochs = {every_n_epochs} and num_images = {num_images} must be ≥ 1."
            )
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self.memory = memory
        self.small_world = small_world
        self.figures = figures
        self.settings = AnalysisSettings(**settings)
        self._active = False
        self._images: torch.Tensor | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        backbone = getattr(pl_module, "backbone", None)
        if not isinstance(backbone, ViR):
            kind = type(backbone).__name__
            rank_zero_info(f"ReservoirDynamics: the backbone is a {kind}, not a ViR: no reservoir dynamics to log.")
            return
        if not trainer.loggers:
            rank_zero_info("ReservoirDynamics: the trainer has no logger: nothing to log.")
            return
        self._active = True
        with torch.random.fork_rng(devices=[]):
            self._images = self._validation_images(trainer)
        self._log_fixed(trainer, backbone)
        self._log_driven(trainer, backbone)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self._active and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._log_driven(trainer, pl_module.backbone)

    def _validation_images(self, trainer: L.Trainer) -> torch.Tensor | None:
        """The first `num_images` images of the datamodule's validation loader; None (i.i.d. drive) without one."""
        datamodule = trainer.datamodule
        if datamodule is None or not is_overridden("val_dataloader", datamodule):
            rank_zero_info("ReservoirDynamics: no datamodule validation loader: driving with i.i.d. input instead.")
            return None
        batches = []
        for batch in datamodule.val_dataloader():
            batches.append(batch[0] if isinstance(batch, (list, tuple)) else batch)
            if sum(len(images) for images in batches) >= self.num_images:
                break
        return torch.cat(batches)[: self.num_images]

    @torch.no_grad()
    def _log_fixed(self, trainer: L.Trainer, backbone: ViR) -> None:
        draw = self._figures_wanted(trainer)
        for core in reservoir_cores(backbone):
            eigenvalues = eigenvalue_spectrum(core.tensors.weight)
            metrics: dict[str, Any] = {"spectral_radius": spectral_radius(eigenvalues)}
            if draw:
                self._log_figure(trainer, core, "spectrum", spectrum_figure(eigenvalues, f"{core.name}: eig(W)"))
            if self.memory:
                capacity = memory_fields(core, self.settings)
                metrics["memory_capacity"] = capacity["memory_capacity"]
                if draw:
                    curve = memory_figure(capacity["memory_capacity_per_delay"], core.name)
                    self._log_figure(trainer, core, "memory", curve)
            if self.small_world:
                graphs = small_world_fields(core, self.settings)
                metrics.update({name: graphs[name] for name in SMALL_WORLD_SCALARS})
            self._log_scalars(trainer, core, metrics)

    @torch.no_grad()
    def _log_driven(self, trainer: L.Trainer, backbone: ViR) -> None:
        draw = self._figures_wanted(trainer)
        for core in reservoir_cores(backbone, self._images):
            metrics = {**lyapunov_fields(core, self.settings), **state_fields(core, self.settings)}
            self._log_scalars(trainer, core, metrics)
            if draw:
                self._log_figure(trainer, core, "states", self._states_figure(core))

    def _states_figure(self, core: ReservoirCore) -> Figure:
        drive = core_drive(core, self.settings)
        states = run_reservoir(core.tensors.weight, drive.values[:1], core.tensors.leak_rate).states[0]  # (T, N)
        source = "tokens of validation image 0" if drive.kind == "tokens" else "i.i.d. input"
        return states_figure(states, f"{core.name}: states h_t, {source}")

    def _figures_wanted(self, trainer: L.Trainer) -> bool:
        return self.figures and any(isinstance(logger, TensorBoardLogger) for logger in trainer.loggers)

    @staticmethod
    def _log_scalars(trainer: L.Trainer, core: ReservoirCore, metrics: dict[str, Any]) -> None:
        named = {f"dynamics/{core.name}/{name}": float(value) for name, value in metrics.items()}
        for logger in trainer.loggers:
            logger.log_metrics(named, step=trainer.global_step)

    @staticmethod
    def _log_figure(trainer: L.Trainer, core: ReservoirCore, name: str, figure: Figure) -> None:
        """Log a figure as an RGB image to every TensorBoard logger."""
        image = figure_to_array(figure)  # (H, W, 3)
        tag = f"dynamics/{core.name}/{name}"
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(tag, image, trainer.global_step, dataformats="HWC")
