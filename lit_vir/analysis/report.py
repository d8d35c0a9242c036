"""Every dynamics measure of one reservoir core as plain, JSON-ready fields, under one set of budgets.

The `lit-vir dynamics` command and the Lightning callback share these so their numbers mean the same.
The Lyapunov exponents, the echo-state check and the state statistics use the core's real tokens when
it has them (`drive: tokens`) and the i.i.d. protocol of `drives` otherwise (`drive: iid`); the memory
capacity always uses the i.i.d. protocol (its definition); spectrum and small-world depend on W alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from lit_vir.analysis.cores import ReservoirCore
from lit_vir.analysis.drives import iid_scalar_input, scalar_drive, token_drive
from lit_vir.analysis.echo_state import echo_state_distance
from lit_vir.analysis.lyapunov import lyapunov_jacobian, lyapunov_perturbation
from lit_vir.analysis.memory import memory_capacity
from lit_vir.analysis.small_world import reservoir_small_world
from lit_vir.analysis.spectrum import eigenvalue_spectrum, spectral_radius
from lit_vir.analysis.states import run_reservoir, state_statistics

__all__ = [
    "MEASURES",
    "AnalysisSettings",
    "Drive",
    "analyse_core",
    "core_drive",
    "core_header",
    "echo_state_fields",
    "lyapunov_fields",
    "memory_fields",
    "small_world_fields",
    "spectrum_fields",
    "state_fields",
]


@dataclass(frozen=True)
class AnalysisSettings:
    """Budgets; at the defaults each measure takes at most about 7 s for N = 1000 on one CPU core."""

    jacobian_samples: int = field(default=8, metadata={"help": "steps of the Jacobian method (one O(N³) eig each)"})
    iid_sequences: int = field(default=4, metadata={"help": "i.i.d. sequences when a core has no tokens"})
    iid_steps: int = field(default=300, metadata={"help": "steps of each i.i.d. sequence"})
    iid_washout: int = field(default=50, metadata={"help": "initial i.i.d. steps left out of the averages"})
    max_delay: int = field(default=200, metadata={"help": "k_max of the memory capacity"})
    strongest_edges: int = field(default=10, metadata={"help": "k of the strongest-edges graph"})
    num_references: int = field(default=2, metadata={"help": "random reference graphs for σ and ω"})
    path_sources: int = field(default=100, metadata={"help": "sampled source nodes of the path lengths"})
    seed: int = field(default=0, metadata={"help": "seed of every random draw of the analyses"})


@dataclass(frozen=True)
class Drive:
    """What a core is driven with: `tokens` or `iid`, the drive u_t + b (B, T, N), the steps to discard."""

    kind: str
    values: torch.Tensor
    washout: int


def core_drive(core: ReservoirCore, settings: AnalysisSettings) -> Drive:
    """The core's real tokens through V, or the i.i.d. scalar protocol when it has none."""
    tensors = core.tensors
    if core.tokens is not None:
        return Drive("tokens", token_drive(core.tokens, tensors.input_weight, tensors.bias), 0)
    inputs = iid_scalar_input(settings.iid_sequences, settings.iid_steps, seed=settings.seed)
    vector = tensors.input_vector(settings.seed)
    return Drive("iid", scalar_drive(inputs.to(vector.device), vector, tensors.bias), settings.iid_washout)


def spectrum_fields(core: ReservoirCore, settings: AnalysisSettings) -> dict[str, Any]:
    """`spectral_radius` ρ(W)."""
    return {"spectral_radius": spectral_radius(eigenvalue_spectrum(core.tensors.weight))}


def lyapunov_fields(core: ReservoirCore, settings: AnalysisSettings) -> dict[str, Any]:
    """`lyapunov_jacobian` and `lyapunov_perturbation`: λ per step by both methods, under the core's drive."""
    drive = core_drive(core, settings)
    tensors = core.tensors
    jacobian = lyapunov_jacobian(
        tensors.weight, drive.values, tensors.leak_rate, washout=drive.washout, samples=settings.jacobian_samples
    )
    perturbation = lyapunov_perturbation(
        tensors.weight, drive.values, tensors.leak_rate, washout=drive.washout, seed=settings.seed
    )
    return {
        "lyapunov_jacobian": jacobian.exponent,
        "lyapunov_perturbation": perturbation.exponent,
    }


def memory_fields(core: ReservoirCore, settings: AnalysisSettings) -> dict[str, Any]:
    """`memory_capacity` MC and `memory_capacity_per_delay` MC_1..MC_kmax (washout k_max steps)."""
    tensors = core.tensors
    capacity = memory_capacity(
        tensors.weight,
        tensors.input_vector(settings.seed),
        tensors.leak_rate,
        tensors.bias,
        max_delay=settings.max_delay,
        washout=settings.max_delay,
        seed=settings.seed,
    )
    return {"memory_capacity": capacity.total, "memory_capacity_per_delay": capacity.per_delay.tolist()}


def echo_state_fields(core: ReservoirCore, settings: AnalysisSettings) -> dict[str, Any]:
    """`echo_state_curve`: ‖h_t − h'_t‖ averaged over sequences, t = 0..T; `echo_state_distance`: its last over
    its first value (→ 0 when the echo-state property holds)."""
    drive = core_drive(core, settings)
    distance = echo_state_distance(core.tensors.weight, drive.values, core.tensors.leak_rate, seed=settings.seed)
    curve = distance.mean(dim=0)  # (T + 1,)
    return {"echo_state_distance": (curve[-1] / curve[0]).item(), "echo_state_curve": curve.tolist()}


def state_fields(core: ReservoirCore, settings: AnalysisSettings) -> dict[str, Any]:
    """`state_mean_abs`, `state_std`, `state_saturated_fraction`, `state_mean_gain` under the core's drive."""
    drive = core_drive(core, settings)
    trajectory = run_reservoir(core.tensors.weight, drive.values, core.tensors.leak_rate)
    statistics = state_statistics(trajectory)
    return {f"state_{name}": value for name, value in asdict(statistics).items()}


def small_world_fields(core: ReservoirCore, settings: AnalysisSettings) -> dict[str, Any]:
    """`weighted_<measure>` and `strongest_<measure>` for every field of `SmallWorld` (C, L, references, σ, ω)."""
    graphs = reservoir_small_world(
        core.tensors.weight,
        strongest=settings.strongest_edges,
        num_references=settings.num_references,
        path_sources=settings.path_sources,
        seed=settings.seed,
    )
    return {f"{graph}_{name}": value for graph, measures in graphs.items() for name, value in asdict(measures).items()}


# name → fields of that measure; ordered cheapest first.
MEASURES: dict[str, Callable[[ReservoirCore, AnalysisSettings], dict[str, Any]]] = {
    "states": state_fields,
    "echo_state": echo_state_fields,
    "spectrum": spectrum_fields,
    "lyapunov": lyapunov_fields,
    "memory": memory_fields,
    "small_world": small_world_fields,
}


def core_header(core: ReservoirCore) -> dict[str, Any]:
    """The fields that name a core: its name, N and what drives it (`tokens` or `iid`)."""
    return {"name": core.name, "num_nodes": core.tensors.num_nodes, "drive": "iid" if core.tokens is None else "tokens"}


def analyse_core(
    core: ReservoirCore, settings: AnalysisSettings, measures: tuple[str, ...] = tuple(MEASURES)
) -> dict[str, Any]:
    """The fields of the chosen measures (names of `MEASURES`) for one core, with its name, N and drive."""
    unknown = set(measures) - set(MEASURES)
    if unknown:
        raise ValueError(f"unknown measures {sorted(unknown)}; choose from {list(MEASURES)}")
    fields = core_header(core)
    for name in measures:
        fields.update(MEASURES[name](core, settings))
    return fields
