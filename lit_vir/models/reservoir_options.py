"""The reservoir's hyperparameters, each declared once: type, default, allowed range and paper symbol.

`ReservoirOptions` is the single source: the topology builders (`topology.py`), `Reservoir` and `ViR`
take their values from it, and `ViR(**options)` forwards its extra keywords here, so jsonargparse
resolves, documents and type-checks them as `--model.backbone.init_args.<name>` (one flat namespace
in configs, with the defaults below; a config states only what it changes). Defaults are the
reference's (spec: `vir.md`, "The reservoir" and "Topology of W").

The topology of W is one choice among `TOPOLOGIES` (`docs/topology.md`); `TOPOLOGY_OPTIONS` says which
options each one reads. A topology ignores the options it does not read rather than refusing them, because
configs are composed from pieces: a size piece (`configs/quickstart.yaml`, a test's tiny model) sets the
cycle-with-jumps ℓ for its N, and a topology piece composed after it must not be refused for a value it never
uses (a search over a joint space samples them too). Where an ignored value matters to a reader, the docs say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from lit_vir.checks import ConfigError, check_choice, check_range

__all__ = ["TOPOLOGIES", "TOPOLOGY_OPTIONS", "WEIGHT_DISTRIBUTIONS", "ReservoirOptions"]

# The topologies of W and the options each reads besides N and α (every topology also reads the options of V,
# b, a and the run). Builders: `lit_vir.models.topology.BUILDERS`.
TOPOLOGY_OPTIONS: dict[str, tuple[str, ...]] = {
    "cycle_jumps": ("cycle_weight", "jump_weight", "background_weight", "jump_size"),
    "random_sparse": ("density", "weight_distribution"),
    "ring": (),
    "delay_line": (),
    "small_world": ("degree", "rewiring_probability", "weight_distribution"),
    "orthogonal": (),
}
TOPOLOGIES = tuple(TOPOLOGY_OPTIONS)
WEIGHT_DISTRIBUTIONS = ("normal", "uniform")


def hyperparameter(
    default: Any, symbol: str = "", search: tuple[float, float, bool] | None = None, **allowed: Any
) -> Any:
    """A dataclass field carrying its paper symbol, its `check_range` bounds (low, high, ..., hint) and, for the
    hyperparameters worth tuning, the range a search draws it from: `(low, high, log)`, inside the allowed range
    (`lit-vir sweep`'s `reservoir` preset is generated from these)."""
    return field(default=default, metadata={"symbol": symbol, "allowed": allowed, "search": search})


def one_of(default: str, choices: tuple[str, ...]) -> Any:
    """A dataclass field whose value is one of `choices` (checked by `check_choice`; a search reads them here)."""
    return field(default=default, metadata={"symbol": "", "choices": choices})


@dataclass(frozen=True)
class ReservoirOptions:
    """How a reservoir's fixed matrices are drawn and how it runs.

    Args:
        num_nodes: N, the number of reservoir nodes (reference 1000).
        spectral_radius: α, W is scaled to this largest |eigenvalue| (reference 0.9; ≈ 1 is the edge of chaos).
            The delay line has no eigenvalue but 0: there α is the weight of its links.
        topology: the pattern of W, one of cycle_jumps (the reference's "nearly fully connected" W), random_sparse,
            ring, delay_line, small_world, orthogonal (docs/topology.md). Each topology reads only its own options
            below and ignores the others.
        cycle_weight: r_i, the one-way cycle's weight before signs and scaling (reference 0.05; cycle_jumps).
        jump_weight: r_j, the two-way jumps' weight (reference 0.5; cycle_jumps).
        background_weight: r_k, the dense background's weight (reference 0.08; cycle_jumps).
        jump_size: ℓ, nodes between two jumps (reference 137; cycle_jumps); smaller than N.
        density: the fraction of W's N² entries that are non-zero (random_sparse; the default 0.01 gives 10 links
            per node at N = 1000, as many as small_world's default degree).
        weight_distribution: the values of W's links before scaling: "normal" N(0, 1) or "uniform" U[−1, 1)
            (random_sparse, small_world).
        degree: k, each node's links in the Watts–Strogatz ring lattice, k/2 on each side; even, below N
            (small_world).
        rewiring_probability: p, the chance that a lattice link is moved to a random node (small_world; 0 is the
            ring lattice, 1 a random graph of the same number of links).
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
    topology: str = one_of("cycle_jumps", TOPOLOGIES)
    cycle_weight: float = hyperparameter(0.05, "r_i", low=0)
    jump_weight: float = hyperparameter(0.5, "r_j", low=0)
    background_weight: float = hyperparameter(0.08, "r_k", low=0)
    jump_size: int = hyperparameter(137, "ℓ", low=1)
    density: float = hyperparameter(0.01, "", low=0, high=1, low_inclusive=False)
    weight_distribution: str = one_of("normal", WEIGHT_DISTRIBUTIONS)
    degree: int = hyperparameter(10, "k", low=2)
    rewiring_probability: float = hyperparameter(0.1, "p", low=0, high=1)
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
            choices = option.metadata.get("choices")
            if choices:
                check_choice(owner, option.name, getattr(self, option.name), choices)
        if self.topology == "cycle_jumps":
            check_range(
                owner,
                "jump_size (ℓ)",
                self.jump_size,
                low=1,
                high=self.num_nodes,
                high_inclusive=False,
                hint=f"It must be smaller than num_nodes (N = {self.num_nodes}); the reference uses 137.",
            )
        if self.topology == "small_world":
            self._check_degree(owner)
        check_range(
            owner,
            "input_sparsity × input_scaling (density of V)",
            self.input_density,
            high=1,
            hint="The reference draws V with this density, so the product must be a fraction.",
        )

    def _check_degree(self, owner: str) -> None:
        """k links per node need k + 1 ≤ N nodes, and split evenly on both sides of the ring."""
        hint = f"Choose an even k below num_nodes (N = {self.num_nodes})."
        check_range(owner, "degree (k)", self.degree, high=self.num_nodes, high_inclusive=False, hint=hint)
        if self.degree % 2:
            raise ConfigError(
                f"{owner}: degree (k) = {self.degree} is odd; the ring lattice links k/2 nodes on each side. {hint}"
            )

    @property
    def input_density(self) -> float:
        """The fraction of V's D·N entries that are non-zero: SD·input_scaling."""
        return self.input_sparsity * self.input_scaling
