"""Bit widths of a quantised copy: one per weight and one per product input, set and averaged here.

A *weight unit* is a quantised layer's weight (QuantLinear, QuantConv2d), sized by its number of weights
n_l; an *activation unit* is the input of a product — a layer's input, or both inputs of an attention
product (`QuantMatmul`: q and kᵀ, or P and v, at one width, as an integer kernel takes them) — sized by
the numbers that pass it per image (measured during calibration). Widths are chosen per unit, separately
for weights and activations, and averaged separately:

    W̄ = Σ_l n_l·w_l / Σ_l n_l          Ā = Σ_s n_s·a_s / Σ_s n_s

W̄ sets the size of the stored weights, Ā the traffic of the activations. Edge layers fixed at their own
width (the patch embedding and head at 8 bits by default, `modules.EDGE_BITS`) are not units: they are
outside W_b A_b and the search, and outside these averages (a W4A4 model has W̄ = Ā = 4 exactly).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import nn

from lit_vir.quantization.modules import QuantMatmul, WeightedProduct, quantized_layers

__all__ = [
    "Precision",
    "activation_units",
    "average_bits",
    "current_precision",
    "set_precision",
    "unit_sizes",
    "weight_units",
]


@dataclass(frozen=True)
class Precision:
    """Bit widths by unit name: `weights[layer]`, `activations[layer or product]`."""

    weights: dict[str, int] = field(default_factory=dict)
    activations: dict[str, int] = field(default_factory=dict)


def weight_units(model: nn.Module) -> dict[str, WeightedProduct]:
    """The quantised layers whose weight width is chosen (every one but the fixed edges)."""
    return {name: layer for name, layer in quantized_layers(model).items() if layer.fixed_bits is None}


def activation_units(model: nn.Module) -> dict[str, WeightedProduct | QuantMatmul]:
    """The product inputs whose width is chosen: each non-fixed layer's input, and the two products of
    each attention whose forward ran during calibration (the others stay float; see `coverage`)."""
    return {
        name: module
        for name, module in model.named_modules()
        if (isinstance(module, WeightedProduct) and module.fixed_bits is None)
        or (isinstance(module, QuantMatmul) and module.calibrated)
    }


def unit_sizes(model: nn.Module) -> tuple[dict[str, int], dict[str, float]]:
    """n of every weight unit (weights) and of every activation unit (values per calibration image)."""
    weights = {name: layer.weight.numel() for name, layer in weight_units(model).items()}
    activations = {name: unit.values_per_image for name, unit in activation_units(model).items()}
    return weights, activations


def average_bits(bits: Mapping[str, int], sizes: Mapping[str, float]) -> float:
    """Size-weighted average width Σ n_u·b_u / Σ n_u over the units of `sizes`."""
    return sum(sizes[name] * bits[name] for name in sizes) / sum(sizes.values())


def current_precision(model: nn.Module) -> Precision:
    """The widths the units hold now."""
    return Precision(
        {name: layer.weight_bits for name, layer in weight_units(model).items()},
        {name: unit.activation_bits for name, unit in activation_units(model).items()},
    )


def _check_names(kind: str, given: Mapping[str, int], units: Mapping[str, object]) -> None:
    if set(given) != set(units):
        missing, unknown = sorted(set(units) - set(given)), sorted(set(given) - set(units))
        raise ValueError(
            f"set_precision: {kind} widths must name every {kind} unit; missing {missing}, unknown {unknown}."
        )


def set_precision(model: nn.Module, precision: int | Precision | None) -> None:
    """Widths for a calibrated quantised copy: None (everything float), one width b for every unit (W_b A_b;
    fixed edges at their own width), or a `Precision` naming every unit."""
    weights, activations = weight_units(model), activation_units(model)
    if isinstance(precision, Precision):
        _check_names("weight", precision.weights, weights)
        _check_names("activation", precision.activations, activations)
        chosen = precision
    else:
        chosen = Precision(dict.fromkeys(weights, precision), dict.fromkeys(activations, precision))
    uncalibrated = [name for name, unit in activations.items() if not unit.calibrated]
    if precision is not None and uncalibrated:
        raise ValueError(
            f"set_precision: no calibration data reached {uncalibrated} (their forward never ran: does the parent "
            "module compute with their weights directly?); calibrate with `calibrated_copy`, or they cannot be "
            "quantised."
        )
    for name, layer in quantized_layers(model).items():
        if layer.fixed_bits is not None:
            bits = None if precision is None else layer.fixed_bits
            layer.set_bits(bits, bits)
        else:
            layer.set_bits(chosen.weights[name], chosen.activations[name])
    for name, module in model.named_modules():
        if isinstance(module, QuantMatmul):
            module.set_bits(chosen.activations.get(name))  # an uncalibrated product is no unit: float
