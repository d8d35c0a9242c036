"""Greedy mixed precision (MPTQ-ViT's Greedy MP, Tai & Wu 2024): spend the bits where the calibration loss
needs them, with separate budgets for weights and activations.

Units are weights and product inputs (`precision.py`), every one starting at the highest choice (8 bits).
A budget is a pair of average widths (W̄ ≤ w, Ā ≤ a). Each step tries every unit of a kind whose average
is still above its bound one choice lower, the others as they are, and lowers the unit u whose
calibration loss L grows least per bit of its kind's average saved:

    s(u: b → b') = [L(c with u at b') − L(c)] / [n_u·(b − b') / Σ_{v of u's kind} n_v]

(c: the current widths; n: a unit's size — its number of weights, or the numbers that pass it per
image; the denominator is the drop of W̄ or Ā the step brings). Within a kind this is the loss growth per
bit saved, Δloss / (n_u·(b − b')); across kinds it prices a bit of W̄ and a bit of Ā alike, since each has
its own budget. A kind that meets its bound is no longer lowered; the search stops when both do.

- Choices (8, 6, 5, 4, 3): the spec's 8, 6, 5, 4 plus 3, so that a 4-bit average can keep sensitive units
  above 4 by taking bits from robust ones.
- Several budgets share one path, visited in decreasing (w, a) order: each takes the first configuration on the
  path that meets it (lowering never reverses), so MP-W4A4 continues from MP-W5A5.
- Calibration loss: KL(p_float ‖ p_quantised) of the class probabilities on the calibration images —
  needs no labels, is 0 for the float model, and is what accuracy loss follows.
- Cost: one calibration pass per candidate unit per step, about U²·(|choices| − 1) passes for U units
  (weights and activations together) to reach the lowest choice — for a 9-block ViT-Small (U = 90) some
  20,000 passes. The exact greedy is the default rather than a one-shot sensitivity table, since lowering
  one unit changes what the others cost; `lazy=True` (Minoux's accelerated greedy, below) re-scores only
  the leading candidates, about U + 2·steps passes, and takes the same path as long as lowering one unit
  never makes another cheaper to lower.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lit_vir.quantization.calibration import predict
from lit_vir.quantization.precision import Precision, average_bits, set_precision, unit_sizes

__all__ = [
    "BIT_CHOICES",
    "Budget",
    "MixedPrecision",
    "SearchStep",
    "calibration_loss",
    "greedy_allocation",
    "greedy_search",
]

BIT_CHOICES = (8, 6, 5, 4, 3)
Kind = Literal["weights", "activations"]
KINDS: tuple[Kind, ...] = ("weights", "activations")


@dataclass(frozen=True, order=True)
class Budget:
    """Upper bounds of the average weight width W̄ and the average activation width Ā."""

    weight_bits: float
    activation_bits: float

    @property
    def label(self) -> str:
        return f"W{self.weight_bits:g}A{self.activation_bits:g}"

    def bound(self, kind: Kind) -> float:
        return self.weight_bits if kind == "weights" else self.activation_bits

    @classmethod
    def parse(cls, text: str) -> Budget:
        """`5` (W̄ ≤ 5 and Ā ≤ 5) or `W5A6` (W̄ ≤ 5, Ā ≤ 6)."""
        pair = re.fullmatch(r"[wW]([0-9.]+)[aA]([0-9.]+)", text.strip())
        try:
            return cls(float(pair[1]), float(pair[2])) if pair else cls(float(text), float(text))
        except ValueError:
            raise ValueError(f"budget {text!r} is neither a number (5) nor W<bits>A<bits> (W5A6)") from None


@dataclass(frozen=True)
class SearchStep:
    """One greedy step: `unit` of `kind` lowered to `bits`, with its score s and the averages and
    calibration loss after it."""

    kind: Kind
    unit: str
    bits: int
    score: float
    weight_average: float
    activation_average: float
    loss: float


@dataclass(frozen=True)
class MixedPrecision:
    """Per budget, the widths of every unit; the greedy path that led there; and how many configurations
    the search measured (calibration passes, for a model)."""

    bits: dict[Budget, Precision]
    steps: list[SearchStep]
    evaluations: int


Candidate = tuple[Kind, str]


def greedy_allocation(
    sizes: Mapping[Kind, Mapping[str, float]],
    budgets: Sequence[Budget],
    loss: Callable[[Precision], float],
    choices: Sequence[int] = BIT_CHOICES,
    lazy: bool = False,
) -> MixedPrecision:
    """The greedy path over units of the given `sizes` (per kind, unit → n) under `loss` (of a precision).

    `lazy`: re-score only the leading candidate each step (Minoux's accelerated greedy): every candidate
    keeps the score it had when last measured, and the lowest is re-measured until the lowest is one
    measured at the current widths. The same path as the exact greedy whenever lowering one unit never
    makes another cheaper to lower (an additive loss, for instance); far fewer passes otherwise — about
    U + 2·steps instead of U·steps."""
    choices = sorted(set(choices), reverse=True)
    lowest = choices[-1]
    if not budgets or any(min(budget.weight_bits, budget.activation_bits) < lowest for budget in budgets):
        raise ValueError(
            f"greedy_search: budgets {[budget.label for budget in budgets]} must be given and at least the lowest "
            f"bit choice {lowest} (choices {choices}); raise the budget or add a lower choice."
        )
    current = {kind: dict.fromkeys(sizes[kind], choices[0]) for kind in KINDS}
    totals = {kind: sum(sizes[kind].values()) for kind in KINDS}
    evaluations = 0

    def averages() -> dict[Kind, float]:
        return {kind: average_bits(current[kind], sizes[kind]) if totals[kind] else 0.0 for kind in KINDS}

    def precision(widths: Mapping[Kind, Mapping[str, int]]) -> Precision:
        return Precision(dict(widths["weights"]), dict(widths["activations"]))

    def lowered(candidate: Candidate) -> int:
        kind, unit = candidate
        return choices[choices.index(current[kind][unit]) + 1]

    def score(candidate: Candidate, now: float) -> tuple[float, float]:
        """s of lowering `candidate` one choice from the current widths, and the loss it gives."""
        nonlocal evaluations
        kind, unit = candidate
        bits, lower = current[kind][unit], lowered(candidate)
        trial = loss(precision(current | {kind: current[kind] | {unit: lower}}))
        evaluations += 1
        return (trial - now) / (sizes[kind][unit] * (bits - lower) / totals[kind]), trial

    now = loss(precision(current))
    evaluations += 1
    known: dict[Candidate, tuple[float, float]] = {}  # lazy: score and loss when last measured
    found: dict[Budget, Precision] = {}
    steps: list[SearchStep] = []
    for budget in sorted(set(budgets), reverse=True):
        while over := [kind for kind in KINDS if averages()[kind] > budget.bound(kind)]:
            candidates = [(kind, unit) for kind in over for unit, bits in current[kind].items() if bits != lowest]
            fresh = {}  # measured at the current widths
            for candidate in candidates:
                if not lazy or candidate not in known:
                    fresh[candidate] = known[candidate] = score(candidate, now)
            while (best := min(candidates, key=lambda candidate: known[candidate][0])) not in fresh:
                fresh[best] = known[best] = score(best, now)
            (kind, unit), (best_score, now) = best, fresh[best]
            current[kind][unit] = lowered(best)
            del known[best]  # its next lowering is a new candidate
            average = averages()
            steps.append(
                SearchStep(kind, unit, current[kind][unit], best_score, average["weights"], average["activations"], now)
            )
        found[budget] = precision(current)
    return MixedPrecision({budget: found[budget] for budget in budgets}, steps, evaluations)


@torch.no_grad()
def calibration_loss(model: nn.Module, images: torch.Tensor, reference: torch.Tensor, batch_size: int = 64) -> float:
    """Mean KL(p_float ‖ p_model) over the images, from the float model's logits `reference` (N, classes)."""
    logits = predict(model, images, batch_size)  # (N, classes)
    return float(F.kl_div(logits.log_softmax(-1), reference.log_softmax(-1), log_target=True, reduction="batchmean"))


def greedy_search(
    model: nn.Module,
    images: torch.Tensor,
    budgets: Sequence[Budget],
    choices: Sequence[int] = BIT_CHOICES,
    batch_size: int = 64,
    lazy: bool = False,
) -> MixedPrecision:
    """Widths per unit of a calibrated quantised copy meeting each budget, the loss measured on `images`
    (leaves the model at the last configuration tried)."""
    weights, activations = unit_sizes(model)
    set_precision(model, None)
    reference = predict(model, images, batch_size)

    def loss(precision: Precision) -> float:
        set_precision(model, precision)
        return calibration_loss(model, images, reference, batch_size)

    return greedy_allocation({"weights": weights, "activations": activations}, budgets, loss, choices, lazy)
