"""Dynamics of the reservoirs, on plain tensors: Lyapunov exponents, memory capacity, small-world
measures, spectrum, echo-state check and state statistics (spec `vir.md`, "Dynamics").

No Lightning in here: the functions take W (N, N), a drive (B, T, N) and the leak rate (or a
`Reservoir` and an index, via `reservoir_tensors`), run on W's device in float64, and return numbers
and tensors. `cores` and `report` apply them to every reservoir of a ViR; `figures` draws them.

Threads: the recurrences are long loops of small products. On a CPU whose cores are also busy with other
processes, torch's intra-op threads wait on each other at every step; on this project's 2-core machine that
made them 10–30× slower than `torch.set_num_threads(1)` (or OMP_NUM_THREADS=1), the setting behind the
timings quoted in each module.
"""

from lit_vir.analysis.cores import ReservoirCore, reservoir_cores
from lit_vir.analysis.drives import (
    ReservoirTensors,
    iid_scalar_input,
    reservoir_tensors,
    scalar_drive,
    scalar_input_vector,
    token_drive,
)
from lit_vir.analysis.echo_state import echo_state_distance
from lit_vir.analysis.lyapunov import LyapunovEstimate, lyapunov_jacobian, lyapunov_perturbation, lyapunov_spectrum
from lit_vir.analysis.memory import MemoryCapacity, memory_capacity
from lit_vir.analysis.report import MEASURES, AnalysisSettings, analyse_core, core_drive
from lit_vir.analysis.small_world import SmallWorld, reservoir_small_world, small_world
from lit_vir.analysis.spectrum import eigenvalue_spectrum, spectral_radius
from lit_vir.analysis.states import StateStatistics, Trajectory, run_reservoir, state_statistics

__all__ = [
    "MEASURES",
    "AnalysisSettings",
    "LyapunovEstimate",
    "MemoryCapacity",
    "ReservoirCore",
    "ReservoirTensors",
    "SmallWorld",
    "StateStatistics",
    "Trajectory",
    "analyse_core",
    "core_drive",
    "echo_state_distance",
    "eigenvalue_spectrum",
    "iid_scalar_input",
    "lyapunov_jacobian",
    "lyapunov_perturbation",
    "lyapunov_spectrum",
    "memory_capacity",
    "reservoir_cores",
    "reservoir_small_world",
    "reservoir_tensors",
    "run_reservoir",
    "scalar_drive",
    "scalar_input_vector",
    "small_world",
    "spectral_radius",
    "state_statistics",
    "token_drive",
]
