"""Perturbations of a trained model's fixed system hyperparameters, as the paper's robustness study does.

Each returns a perturbed *copy*; the original is untouched. For a ViR (every `Reservoir` in it):

- `spectral_radius`: W ← f·W, i.e. α rescaled by the factor f (1 = unperturbed);
- `noise`: relative Gaussian noise on W and V, M ← M ⊙ (1 + ε·Z), Z ~ N(0, 1) — multiplicative, so the
  sparsity pattern of V and the zero of W stay where they are (ε = 0 = unperturbed);
- `input_sparsity`: V redrawn from its seed at another density SD (its training SD = unperturbed);
- `reservoir_seed`: W redrawn with another seed at the same topology and α (its training seed = unperturbed).

For other backbones (ViT and the variants) `noise` applies the same relative noise to the weight
matrices of the attention and MLP layers, so both families can share one noise axis; a backbone with
neither (a CNN through `TimmModel`) gets it on every weight matrix and kernel.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from lit_vir.checks import check_choice
from lit_vir.models.reservoir import Reservoir, draw_matrices

__all__ = [
    "KINDS",
    "RESERVOIR_KINDS",
    "Perturbation",
    "accuracy",
    "correct_images",
    "perturbed",
    "unperturbed_level",
]

RESERVOIR_KINDS = ("spectral_radius", "input_sparsity", "reservoir_seed")
KINDS = ("noise", *RESERVOIR_KINDS)
NOISY_LAYERS = ("attn", "mlp")  # parameter-name parts of attention and MLP weights in the ViT family


@dataclass(frozen=True)
class Perturbation:
    kind: str
    level: float


def reservoirs(model: nn.Module) -> list[Reservoir]:
    return [module for module in model.modules() if isinstance(module, Reservoir)]


def unperturbed_level(model: nn.Module, kind: str) -> float:
    """The level at which `kind` leaves `model` as trained."""
    check_choice("perturbation", "kind", kind, KINDS)
    if kind == "spectral_radius":
        return 1.0
    if kind == "noise":
        return 0.0
    first = reservoirs(model)[0]
    return first.options.input_sparsity if kind == "input_sparsity" else float(first.seed)


def noisy_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weights `noise` perturbs in a model without reservoirs: the attention and MLP matrices of the ViT
    family (the parts a reservoir replaces), or every ≥ 2-d weight of a model that has none (a CNN)."""
    weights = [(name, parameter) for name, parameter in model.named_parameters() if parameter.dim() >= 2]
    matched = [parameter for name, parameter in weights if any(part in name.split(".") for part in NOISY_LAYERS)]
    return matched or [parameter for _, parameter in weights]


def _relative_noise(tensor: torch.Tensor, scale: float, generator: torch.Generator) -> None:
    noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float64).to(tensor)
    tensor.mul_(1.0 + scale * noise)


def _redraw_recurrent(reservoir: Reservoir, seed: int) -> None:
    """W of bank member i drawn from `seed + i`, as at construction."""
    for index in range(reservoir.num_reservoirs):
        weight, _, _ = draw_matrices(reservoir.options, reservoir.in_features, seed + index)
        reservoir.weight[index].copy_(weight)


def _redraw_input(reservoir: Reservoir, input_sparsity: float) -> None:
    """V of bank member i redrawn from its own seed at another density: the same permutation of positions,
    so a denser V keeps every non-zero of a sparser one."""
    options = replace(reservoir.options, input_sparsity=input_sparsity)
    for index in range(reservoir.num_reservoirs):
        _, matrix, _ = draw_matrices(options, reservoir.in_features, reservoir.seed + index)
        reservoir.input_weight[index].copy_(matrix)


@torch.no_grad()
def perturbed(model: nn.Module, perturbation: Perturbation, seed: int = 0) -> nn.Module:
    """A copy of `model` with `perturbation` applied (noise drawn from `seed`)."""
    kind, level = perturbation.kind, perturbation.level
    check_choice("perturbation", "kind", kind, KINDS)
    banks = reservoirs(model)
    if kind in RESERVOIR_KINDS and not banks:
        raise ValueError(f"perturbation {kind!r} needs a reservoir; {type(model).__name__} has none.")
    copied = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    if kind == "noise" and banks:
        for reservoir in reservoirs(copied):
            _relative_noise(reservoir.weight, level, generator)
            _relative_noise(reservoir.input_weight, level, generator)
    elif kind == "noise":
        for parameter in noisy_weights(copied):
            _relative_noise(parameter, level, generator)
    base_seed = banks[0].seed if banks else 0
    for reservoir in reservoirs(copied):
        if kind == "spectral_radius":
            reservoir.weight.mul_(level)
        elif kind == "input_sparsity" and level != reservoir.options.input_sparsity:
            _redraw_input(reservoir, level)
        elif kind == "reservoir_seed" and int(level) != base_seed:
            _redraw_recurrent(reservoir, int(level) + reservoir.seed - base_seed)  # serial cores keep offsets
    return copied


@torch.no_grad()
def accuracy(model: nn.Module, batches: DataLoader | Iterable, device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy of `model` (in eval mode) over (images, labels) batches."""
    outcomes = correct_images(model, batches, device)
    return float(outcomes.mean()) if len(outcomes) else 0.0


@torch.no_grad()
def correct_images(model: nn.Module, batches: DataLoader | Iterable, device: torch.device | str = "cpu") -> np.ndarray:
    """Each image's outcome (1 right, 0 wrong) under `model` (in eval mode), in batch order: what intervals and
    paired tests between two models on the same images need. No autograd graph: `lit-vir quantize` scores whole
    test sets through it."""
    model.eval().to(device)
    found = []
    for images, labels in batches:
        predictions = model(images.to(device)).argmax(dim=-1)
        found.append((predictions.cpu() == labels).numpy().astype(np.int8))
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int8)
