"""MPTQ-ViT's mixed-precision search at its edges: the lowest budget, kinds without units, and the lazy switch as
`greedy_search` passes it on (the worked paths are in test_quantization.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_vir.quantization import (
    Budget,
    Precision,
    Recipe,
    average_bits,
    calibrated_copy,
    greedy_allocation,
    greedy_search,
    unit_sizes,
)


def additive_loss(precision: Precision) -> float:
    """Each unit costs (8 − b)·weight, a unit's weight growing with its name: lowering never interacts."""
    widths = {**precision.weights, **precision.activations}
    return sum((8 - bits) * (1 + index) for index, bits in enumerate(widths.values()))


def test_a_budget_at_the_lowest_choice_is_met_by_lowering_every_unit():
    sizes = {"weights": {"a": 10, "b": 30}, "activations": {"x": 5}}
    search = greedy_allocation(sizes, [Budget(4, 4)], additive_loss, choices=(8, 4))
    assert search.bits[Budget(4, 4)] == Precision({"a": 4, "b": 4}, {"x": 4})


def test_a_kind_without_units_averages_zero_bits_and_is_never_over_budget():
    sizes = {"weights": {"a": 1, "b": 1}, "activations": {}}
    search = greedy_allocation(sizes, [Budget(6, 4)], additive_loss, choices=(8, 4))
    assert search.bits[Budget(6, 4)] == Precision({"a": 4, "b": 8}, {})  # (4 + 8) / 2 = 6; a is the cheaper
    assert [(step.weight_average, step.activation_average) for step in search.steps] == [(6.0, 0.0)]


def layered_model() -> tuple[nn.Module, torch.Tensor]:
    """Three random linear layers, calibrated: their losses interact, so the lazy greedy measures fewer passes."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 5)).eval()
    calibration = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    return calibrated_copy(model, calibration, Recipe(sq_b=False)), calibration


def exact_greedy_evaluations(sizes: dict, budget: Budget, steps: list, choices: tuple[int, ...]) -> int:
    """The exact greedy's count, replayed from its path: the float configuration, then at every step one trial
    per unit of a kind still over budget that is not at the lowest choice."""
    current = {kind: dict.fromkeys(units, choices[0]) for kind, units in sizes.items()}
    bounds = {"weights": budget.weight_bits, "activations": budget.activation_bits}
    count = 1
    for step in steps:
        over = [kind for kind in sizes if average_bits(current[kind], sizes[kind]) > bounds[kind]]
        count += sum(bits != choices[-1] for kind in over for bits in current[kind].values())
        current[step.kind][step.unit] = step.bits
    return count


@pytest.mark.parametrize("lazy", [None, False, True])
def test_greedy_search_is_exact_by_default_and_passes_lazy_on(lazy):
    model, calibration = layered_model()
    weights, activations = unit_sizes(model)
    sizes = {"weights": weights, "activations": activations}
    choices, budget = (8, 6, 4), Budget(5, 5)
    options = {} if lazy is None else {"lazy": lazy}
    search = greedy_search(model, calibration, [budget], choices=choices, **options)
    exact = exact_greedy_evaluations(sizes, budget, search.steps, choices)
    assert len(search.steps) >= 4
    if lazy:
        assert search.evaluations < exact
    else:
        assert search.evaluations == exact


def test_greedy_search_runs_every_forward_pass_at_the_given_batch_size():
    """The batch size bounds each forward pass's memory (the float reference's and every trial's): 100 images in
    passes of 30, 30, 30 and 10, or of the default 64 and 36 (the logits would be the same at any size)."""
    model, _ = layered_model()
    images = torch.randn(100, 8, generator=torch.Generator().manual_seed(2))
    seen: list[int] = []
    model.register_forward_pre_hook(lambda module, inputs: seen.append(len(inputs[0])))
    search = greedy_search(model, images, [Budget(6, 6)], choices=(8, 4), batch_size=30)
    assert seen == [30, 30, 30, 10] * (1 + search.evaluations)  # the reference, then each evaluation
    seen.clear()
    search = greedy_search(model, images, [Budget(6, 6)], choices=(8, 4))
    assert seen == [64, 36] * (1 + search.evaluations)
