"""The reservoir's hyperparameters, each declared once: type, default, allowed range and paper symbol.

`ReservoirOptions` is the single source: the topology builders (`topology.py`), `Reservoir` and `ViR`
take their values from it, and `ViR(**options)` forwards its extra keywords here, so jsonargparse
resolves, documents and type-checks them as `--model.backbone.init_args.<name>` (one flat namespace
in configs, with the defaults below; a config states only what it changes). Defaults are the
reference's (spec: `vir.md`, "The reservoir" and "Topology of W").
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from lit_vir.checks import check_range

__all__ = ["ReservoirOptions"]


def hyperparameter(
    default: Any, symbol: str = "", search: tuple[float, float, bool] | None = None, **allowed: Any
) -> Any:
    """A dataclass field carrying its paper symbol, its `check_range` bounds (low, high, ..., hint) and, for the
    hyperparameters worth tuning, the range a search draws it from: `(low, high, log)`, inside the allowed range
    (`lit-vir sweep`'s `reservoir` preset is generated from these)."""
    return field(default=default, metadata={"symbol": symbol, "allowed": allowed, "search": search})


@dataclass(frozen=True)
class ReservoirOptions:
    """How a reservoir's fixed matrices are drawn and how it runs.

    Args:
        num_nodes: N, the number of reservoir nodes (reference 1000).
        spectral_radius: α, W is scaled to this largest |eigenvalue| (reference 0.9; ≈ 1 is the edge of chaos).
        cycle_weight: r_i, the one-way cycle's weight before signs and scaling (reference 0.05).
        jump_weight: r_j, the two-way jumps' weight (reference 0.5).
        background_weight: r_k, the dense background's weight (reference 0.08).
        jump_size: ℓ, nodes between two jumps (reference 137); smaller than N.
        input_sparsity: SD, the density of V (reference 0.05).
        input_scaling: multiplies the density of V, as the reference's `scipy.sparse.random` call does (1).
        signed_input: draw V's values from U[−1, 1) instead of the reference's U[0, 1).
        leak_rate: a, h_t = (1 − a)·h_{t−1} + a·tanh(…) (reference 1: no leak).
        bias_scaling: b ~ U[−s, s) per node, fixed (reference 0: no bias).
        memoryless: the `memoryless` ablation: W = 0, so h_t = tanh(u_t + b) — the nonlinearity without recurrence.
        autocast_recurrence: run the recurrence under autocast (bf16/fp16) instead of float32.
        checkpoint_recurrence: recompute the states in backward instead of storing them (serial BPTT memory).
    """

    num_nodes: int = hyperparameter(1000, "N", search=(200, 2000, True), low=2)
    spectral_radius: float = hyperparameter(
        0.9,
        "α",
        search=(0.5, 1.5, False),
        low=0,
        low_inclusive=False,
        hint="Typical values lie in 0.5–1.5; the reference uses 0.9.",
    )
    cycle_weight: float = hyperparameter(0.05, "r_i", low=0)
    jump_weight: float = hyperparameter(0.5, "r_j", low=0)
    background_weight: float = hyperparameter(0.08, "r_k", low=0)
    jump_size: int = hyperparameter(137, "ℓ", low=1)
    input_sparsity: float = hyperparameter(0.05, "SD", search=(0.01, 0.5, True), low=0, high=1, low_inclusive=False)
    input_scaling: float = hyperparameter(1.0, "", search=(0.2, 2.0, True), low=0, low_inclusive=False)
    signed_input: bool = False
    leak_rate: float = hyperparameter(1.0, "a", search=(0.05, 1.0, True), low=0, high=1, low_inclusive=False)
    bias_scaling: float = hyperparameter(0.0, "", low=0)
    memoryless: bool = False
    autocast_recurrence: bool = False
    checkpoint_recurrence: bool = False

    def __post_init__(self) -> None:
        owner = "Reservoir"
        for option in fields(self):
            allowed = option.metadata.get("allowed")
            if allowed:
                symbol = option.metadata["symbol"]
                label = f"{option.name} ({symbol})" if symbol else option.name
                check_range(owner, label, getattr(self, option.name), **allowed)
        check_range(
            owner,
            "jump_size (ℓ)",
            self.jump_size,
            low=1,
            high=self.num_nodes,
            high_inclusive=False,
            hint=f"It must be smaller than num_nodes (N = {self.num_nodes}); the reference uses 137.",
        )
        check_range(
            owner,
            "input_sparsity × input_scaling (density of V)",
            self.input_density,
            high=1,
            hint="The reference draws V with this density, so the product must be a fraction.",
        )

    @property
    def input_density(self) -> float:
        """The fraction of V's D·N entries that are non-zero: SD·input_scaling."""
        return self.input_sparsity * self.input_scaling
