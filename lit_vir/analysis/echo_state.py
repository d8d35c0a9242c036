"""The echo-state property, checked directly: the state must forget where it started.

Jaeger (2001): a reservoir has the echo-state property if, under the same input, trajectories from
any two initial states converge, ‖h_t − h'_t‖ → 0 as t grows. Here h_0 = 0 (as the model starts)
and h'_0 ~ U[−1, 1]^N (seeded), driven by the same drive (B, T, N). Cost: two trajectories, O(B·T·N²).
"""

from __future__ import annotations

import torch

from lit_vir.analysis.states import run_reservoir

__all__ = ["echo_state_distance"]


def echo_state_distance(
    weight: torch.Tensor, drive: torch.Tensor, leak_rate: float = 1.0, *, seed: int = 0
) -> torch.Tensor:
    """‖h_t − h'_t‖ for t = 0..T: (B, T + 1), column 0 the initial distance. It must decay towards 0."""
    generator = torch.Generator().manual_seed(seed)
    shape = (drive.shape[0], drive.shape[2])
    draws = torch.rand(shape, generator=generator, dtype=torch.float64, device=generator.device)
    other_start = (2.0 * draws - 1.0).to(drive)  # (B, N)
    states = run_reservoir(weight, drive, leak_rate).states  # (B, T, N)
    other = run_reservoir(weight, drive, leak_rate, initial_state=other_start).states
    distance = (states - other).norm(dim=-1)  # (B, T)
    return torch.cat([other_start.norm(dim=-1, keepdim=True), distance], dim=1)
