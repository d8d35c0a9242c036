"""Check a sweep against the models before any trial starts: every grid cell and every end of every search range is
parsed by `fit`'s own parser and built (model and datamodule, no data read), so a bad value fails now, with the
model's own message (the field, the value, the allowed range), and not hours later in trial 37.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import jsonargparse
import torch
from jsonargparse import ArgumentError

from lit_vir.checks import ConfigError, find_config_error
from lit_vir.config import tool_parser
from lit_vir.sweep.spaces import OPTIMIZER, search_space
from lit_vir.sweep.spec import Cell, Param, SweepSpec, as_argv, cells

__all__ = ["base_argv", "parse_run", "validate"]


def base_argv(spec: SweepSpec) -> list[str]:
    return [arg for piece in spec.base for arg in ("-c", piece)]


def run_parser() -> jsonargparse.ArgumentParser:
    """`fit`'s run sections (seed, trainer, model, data, optimiser, scheduler), raising instead of exiting."""
    parser = tool_parser("lit-vir fit", "", "", sections="run")
    parser.exit_on_error = False
    return parser


@contextmanager
def as_config_error(where: str) -> Iterator[None]:
    """A parse error or a model's ConfigError, as a ConfigError that says which part of the sweep caused it."""
    try:
        yield
    except ArgumentError as error:
        raise ConfigError(f"{where}: {str(error).strip()}") from None
    except Exception as error:
        found = find_config_error(error)
        if found is None:
            raise
        raise ConfigError(f"{where}: {found}") from None


def parse_run(parser: jsonargparse.ArgumentParser, argv: list[str], where: str) -> jsonargparse.Namespace:
    with as_config_error(where):
        return parser.parse_args(argv)


def check_builds(parser: jsonargparse.ArgumentParser, config: jsonargparse.Namespace, where: str) -> None:
    """Build the model and datamodule (as `fit` would, without a trainer; no data is read), and the optimiser on a
    parameter (torch checks lr ≥ 0 there); a refusal becomes a ConfigError that says `where`."""
    with as_config_error(where):
        config = config.clone()
        config.pop("trainer", None)  # its callbacks and logger need not exist yet
        model = parser.instantiate(config).get("model")
        if model is None:
            raise ConfigError("no model: the base pieces must give a `model:` section")
        if model.optimizer_factory is not None:
            try:
                model.optimizer_factory([torch.nn.Parameter(torch.zeros(1))])
            except ValueError as error:  # torch: "Invalid learning rate: -0.1"
                raise ConfigError(f"the optimiser refuses it: {error}") from None


def check_search_value(
    parser: jsonargparse.ArgumentParser, argv: list[str], key: str, param: Param, value: object, cell: Cell
) -> None:
    where = f"search.space.{key} = {value!r} (the {'choice' if param.choices is not None else 'range end'})"
    if len(cell.name) and cell.params:
        where += f" in grid cell {cell.name}"
    if key.startswith(OPTIMIZER):
        optimizer = parse_run(parser, argv, where).model.init_args.get("optimizer")
        if optimizer is None:
            raise ConfigError(
                f"{where}: the config names no optimiser (the module's default Adam takes no options): add one, e.g. "
                "`-c configs/vir.yaml` (Adam 3e-4) or `-c configs/recipe/strong.yaml` (AdamW)."
            )
    config = parse_run(parser, argv + as_argv({key: value}), where)
    check_builds(parser, config, where)


def validate(spec: SweepSpec) -> list[Cell]:
    """The grid's cells, once each and every search value has been parsed and built; else a ConfigError."""
    spec.check()
    found = cells(spec)
    space = search_space(spec.search) if spec.search else {}
    if spec.search is not None and not space:
        raise ConfigError("search: no dimension: name presets or give a space.")
    parser = run_parser()
    seed_messages = logging.getLogger("lightning.fabric.utilities.seed")
    level = seed_messages.level
    seed_messages.setLevel(logging.WARNING)  # each build seeds: no "Seed set to" line per cell
    try:
        for cell in found:
            check_cell(parser, spec, cell, space)
    finally:
        seed_messages.setLevel(level)
    return found


def check_cell(parser: jsonargparse.ArgumentParser, spec: SweepSpec, cell: Cell, space: dict[str, Param]) -> None:
    """The cell as it is, then with each end of each search range (or each choice)."""
    argv = base_argv(spec) + list(cell.argv)
    where = f"grid cell {cell.name}" if cell.params else "the base config"
    config = parse_run(parser, argv, where)
    check_builds(parser, config, where)
    for key, param in space.items():
        for value in param.values_to_check():
            check_search_value(parser, argv, key, param, value, cell)
