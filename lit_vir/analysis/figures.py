"""Figures of the dynamics for TensorBoard and notebooks, drawn with matplotlib's object API.

Each function returns a `matplotlib.figure.Figure` attached to the non-interactive Agg canvas: no
pyplot, no global state and no display, so they are safe in training callbacks and on headless
machines. `figure_to_array` renders one to an RGB image for `SummaryWriter.add_image`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["figure_to_array", "memory_figure", "spectrum_figure", "states_figure", "topology_figure"]


def _figure(width: float = 5.0, height: float = 4.0) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def figure_to_array(figure: Figure) -> np.ndarray:
    """The rendered figure as an (H, W, 3) uint8 array."""
    canvas = figure.canvas
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def spectrum_figure(eigenvalues: torch.Tensor, title: str = "eigenvalues of W") -> Figure:
    """Eigenvalues (N,) in the complex plane, with the unit circle and the circle of radius ρ."""
    figure = _figure(4.5, 4.5)
    axes = figure.add_subplot()
    values = eigenvalues.detach().cpu()
    radius = values.abs().max().item()
    angle = np.linspace(0.0, 2.0 * math.pi, 361)
    axes.plot(np.cos(angle), np.sin(angle), color="black", linewidth=1.0, label="unit circle")
    circle = (radius * np.cos(angle), radius * np.sin(angle))
    axes.plot(*circle, "--", color="tab:red", linewidth=1.0, label=f"ρ = {radius:.3f}")
    axes.scatter(values.real.numpy(), values.imag.numpy(), s=4, alpha=0.6)
    axes.set_aspect("equal")
    axes.set_xlabel("Re λ")
    axes.set_ylabel("Im λ")
    axes.set_title(title)
    axes.legend(loc="upper right", fontsize="small")
    return figure


def states_figure(states: torch.Tensor, title: str = "reservoir states h_t") -> Figure:
    """A heat map of one image's states (T, N): tokens down, nodes across, colour h ∈ [−1, 1]."""
    figure = _figure(7.0, 3.5)
    axes = figure.add_subplot()
    image = axes.imshow(
        states.detach().cpu().numpy(), aspect="auto", cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest"
    )
    axes.set_xlabel("node")
    axes.set_ylabel("token t")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label="h")
    return figure


def memory_figure(per_delay: torch.Tensor | list[float], title: str = "memory capacity") -> Figure:
    """MC_k against the delay k, with the total MC in the title."""
    values = torch.as_tensor(per_delay, dtype=torch.float64).cpu()
    figure = _figure(5.0, 3.5)
    axes = figure.add_subplot()
    axes.plot(np.arange(1, len(values) + 1), values.numpy())
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("delay k")
    axes.set_ylabel("MC_k = corr²")
    axes.set_title(f"{title}: MC = {values.sum().item():.1f}")
    return figure


def topology_figure(weight: torch.Tensor, title: str = "W") -> Figure:
    """The matrix W (N, N) as an image, colour symmetric about 0 (row i → column j: weight from i to j)."""
    values = weight.detach().cpu().double().numpy()
    limit = float(np.abs(values).max())
    figure = _figure(5.0, 4.5)
    axes = figure.add_subplot()
    image = axes.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    axes.set_xlabel("to node j")
    axes.set_ylabel("from node i")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label="W_ij")
    return figure
