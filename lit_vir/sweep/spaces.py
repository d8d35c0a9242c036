"""Search spaces from their one source: the presets a sweep names, and the short names its parameters go by.

The `reservoir` preset is read off `ReservoirOptions` — every field declared with a search range
(`hyperparameter(..., search=(low, high, log))`) becomes a dimension with that range, an int field an int one — so
a new reservoir hyperparameter joins the preset by its declaration alone. `learning_rate` and `weight_decay` tune
the optimiser of any backbone.
"""

from __future__ import annotations

import typing
from dataclasses import fields

from lit_vir.checks import ConfigError
from lit_vir.models.reservoir_options import ReservoirOptions
from lit_vir.sweep.spec import Param, Search

__all__ = ["BACKBONE", "LINKED", "OPTIMIZER", "PRESETS", "param_names", "reservoir_space", "search_space"]

BACKBONE = "model.init_args.backbone.init_args."
OPTIMIZER = "model.init_args.optimizer.init_args."
# What the datamodule links into the model: set by the dataset, never searched (the CLI would ignore the value).
LINKED = ("num_classes", "image_size", "in_channels")


def reservoir_space() -> dict[str, Param]:
    """Every `ReservoirOptions` field declared with a search range, as a dimension of the backbone's options."""
    types = typing.get_type_hints(ReservoirOptions)
    space = {}
    for option in fields(ReservoirOptions):
        declared = option.metadata.get("search")
        if declared is None:
            continue
        low, high, log = declared
        space[BACKBONE + option.name] = Param(
            low=low, high=high, log=log, type="int" if types[option.name] is int else "float"
        )
    return space


PRESETS = {
    "reservoir": reservoir_space,
    # Adam(W)'s useful learning rates span decades: log-uniform over 10⁻⁵–3·10⁻² (the reference uses 3·10⁻⁴).
    "learning_rate": lambda: {OPTIMIZER + "lr": Param(low=1e-5, high=3e-2, log=True)},
    "weight_decay": lambda: {OPTIMIZER + "weight_decay": Param(low=1e-6, high=1e-1, log=True)},
}


def canonical(key: str) -> str:
    """`model.backbone.init_args.x` and `model.init_args.backbone.init_args.x` name the same option; use the
    second (LightningCLI's full form), so a preset and a hand-written space cannot hold one option twice."""
    key = key.removeprefix("--")
    if key.startswith("model.") and not key.startswith("model.init_args."):
        key = "model.init_args." + key.removeprefix("model.")
    return key


def search_space(search: Search) -> dict[str, Param]:
    """The presets' dimensions, then the spec's own `space` (which may narrow a preset's range), by full key; a
    linked key is refused."""
    space: dict[str, Param] = {}
    for preset in search.presets:
        space.update(PRESETS[preset]())
    space.update({canonical(key): param for key, param in search.space.items()})
    for key in space:
        if key.startswith("model.") and key.rsplit(".", 1)[-1] in LINKED:
            raise ConfigError(
                f"search.space: {key} is linked from the datamodule (num_classes, image_size and in_channels follow "
                "the dataset and an override is ignored): search over datasets with grid.datasets instead."
            )
    return space


def param_names(keys: typing.Iterable[str]) -> dict[str, str]:
    """Each dotted key's name among a trial's parameters: its last part (`lr`, `spectral_radius`), or more of it
    where two keys end alike."""
    keys = list(keys)
    names = {}
    for key in keys:
        parts = key.split(".")
        depth = 1
        while depth < len(parts) and sum(other.split(".")[-depth:] == parts[-depth:] for other in keys) > 1:
            depth += 1
        names[key] = ".".join(part for part in parts[-depth:] if part != "init_args") or key
    return names
