"""Which parameters weight decay may touch: one rule for every backbone, in one place.

Decay shrinks a weight towards 0. That regularises matrices, but it distorts parameters whose value at 0
means something else: biases and the scale/shift of normalisations, scalars such as ReViT's mixing α, ViT-Slim's
soft masks ζ (pulled towards "pruned" by a term they do not need: they carry their own L1), position embeddings
and class tokens (timm and DeiT exempt both). The rule:

    no decay  ⇔  the parameter has ≤ 1 dimension, or a module lists it in `no_weight_decay()`

`no_weight_decay()` is timm's convention (a set of parameter names relative to the module that declares it),
so timm models and lit_vir's own models answer the same question the same way.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["no_weight_decay_names", "parameter_groups"]


def declared_no_weight_decay(model: nn.Module) -> set[str]:
    """Full names of the parameters that some module of `model` lists in its `no_weight_decay()`."""
    declared = set()
    for prefix, module in model.named_modules():
        exempt = getattr(module, "no_weight_decay", None)
        if callable(exempt):
            declared |= {f"{prefix}.{name}" if prefix else name for name in exempt()}
    return declared


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Names of the trainable parameters of `model` that weight decay must not touch (the rule above)."""
    declared = declared_no_weight_decay(model)
    return {name for name, parameter in model.named_parameters() if parameter.ndim <= 1 or name in declared}


def parameter_groups(model: nn.Module) -> list[dict[str, Any]]:
    """The trainable parameters as two optimiser groups: `decay` (the optimiser's own weight_decay) and `no_decay`
    (weight_decay 0), names that LearningRateMonitor logs them under (`lr-AdamW/decay`). Empty groups are dropped."""
    exempt = no_weight_decay_names(model)
    trainable = [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]
    groups = [
        {"name": "decay", "params": [parameter for name, parameter in trainable if name not in exempt]},
        {
            "name": "no_decay",
            "params": [parameter for name, parameter in trainable if name in exempt],
            "weight_decay": 0.0,
        },
    ]
    return [group for group in groups if group["params"]]
