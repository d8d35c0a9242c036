"""What a sweep is: the YAML spec of `lit-vir sweep`, and the trials it expands into.

A sweep is many `lit-vir fit` runs of one base config. Its **grid** is a cartesian product of named rows (each a
list of config pieces and dotted overrides) × data pieces × values of any dotted key × seeds; its **search space**
gives distributions (uniform, log-uniform, int, categorical) of dotted keys for a sampler to draw from. With a grid
only, every cell (seeds included) is one trial. With a search space, each grid cell without its seed is a **study**
of `search.n_trials` trials, and each trial trains every seed of the grid (its value is the mean over them), so a
row's hyperparameters are tuned on the same seeds the table will report.

The spec is parsed like every `lit-vir` config (jsonargparse: `-c`, `--print_config`, dotted overrides, the same
error messages); nothing in it is a second config system for the runs: a trial is an argv of `lit-vir fit`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonargparse
import yaml

from lit_vir.checks import ConfigError

__all__ = [
    "Cell",
    "Grid",
    "Launcher",
    "Param",
    "Pruner",
    "Resources",
    "Row",
    "Search",
    "SweepSpec",
    "as_argv",
    "cells",
    "read_spec",
    "spec_parser",
    "write_spec",
]

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")  # a folder and a study name: no spaces, no slashes


@dataclass
class Row:
    """One named row of the grid: config pieces (merged after the base, left to right), dotted overrides, and
    values of dotted keys crossed with the grid's `params` for this row only (e.g. the depths a serial ViR has)."""

    pieces: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    params: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class Grid:
    """The cartesian product rows × datasets × params × seeds. An empty dimension is left out (the base's value).

    Args:
        rows: named rows, e.g. `{vir: {pieces: [configs/ablation/no_reservoir.yaml]}}`.
        datasets: data pieces, e.g. `[configs/data/mnist.yaml, configs/data/cifar10.yaml]`.
        params: values of dotted keys, e.g. `{model.init_args.backbone.init_args.spectral_radius: [0.8, 1.0]}`.
        seeds: `seed_everything` of each run; a ViR also draws its reservoir with that seed (its `seed` option).
    """

    rows: dict[str, Row] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    params: dict[str, list[Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)


@dataclass
class Param:
    """One dimension of a search space: `low`/`high` (with `log` for a log-uniform draw, `step` for a grid of
    values, `type: int` for integers) or `choices` (categorical)."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    type: Literal["float", "int"] = "float"
    choices: list[Any] | None = None

    def check(self, key: str) -> None:
        """The distribution itself must make sense (whether the model accepts its values is checked later)."""
        where = f"search.space.{key}"
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ConfigError(f"{where}: give either choices or low/high, not both.")
            if not self.choices:
                raise ConfigError(f"{where}: choices is empty; list at least one value.")
            return
        if self.low is None or self.high is None:
            raise ConfigError(
                f"{where}: low and high are both needed (or choices), got low={self.low}, high={self.high}."
            )
        if not self.low < self.high:
            raise ConfigError(f"{where}: low = {self.low} must be smaller than high = {self.high}.")
        if self.log and self.low <= 0:
            raise ConfigError(f"{where}: a log-uniform range needs low > 0, got low = {self.low}.")
        if self.log and self.step is not None:
            raise ConfigError(f"{where}: log and step cannot be combined (Optuna draws one or the other).")
        if self.type == "int" and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ConfigError(f"{where}: an int range needs integer bounds, got [{self.low}, {self.high}].")

    def values_to_check(self) -> list[Any]:
        """The values whose acceptance by the model stands for the whole range: the ends, or every choice."""
        if self.choices is not None:
            return list(self.choices)
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]


@dataclass
class Search:
    """A search space and how to draw from it.

    Args:
        presets: spaces generated from their one source — `reservoir` (`ReservoirOptions`' declared search ranges),
            `learning_rate`, `weight_decay` — merged under `space`.
        space: dotted key → `Param`.
        sampler: Optuna's `tpe`, `random`, `cmaes` (numeric spaces), `qmc`, or `grid` (every combination of
            the `choices`/stepped ranges; n_trials is then the grid's size at most).
        n_trials: trials per study (per grid cell).
        sampler_seed: the sampler's own seed, so a search can be repeated.
    """

    presets: list[Literal["reservoir", "learning_rate", "weight_decay"]] = field(default_factory=list)
    space: dict[str, Param] = field(default_factory=dict)
    sampler: Literal["tpe", "random", "cmaes", "qmc", "grid"] = "tpe"
    n_trials: int = 20
    sampler_seed: int = 0


@dataclass
class Pruner:
    """Stop hopeless trials early (Optuna's pruners).

    Args:
        kind: `none`; `median` (below the median of earlier trials at the same epoch); `successive_halving` or
            `hyperband` (rungs of epochs); `wilcoxon` (across a trial's seeds: a Wilcoxon signed-rank test of its
            per-seed values against the best trial's).
        warmup_epochs: epochs a trial always gets before `median` may prune it.
        min_resource: epochs of the first rung (`successive_halving`, `hyperband`).
        p_threshold: `wilcoxon`'s significance level.
    """

    kind: Literal["none", "median", "successive_halving", "hyperband", "wilcoxon"] = "none"
    warmup_epochs: int = 1
    min_resource: int = 1
    p_threshold: float = 0.1


@dataclass
class Resources:
    """What one trial gets. `threads`: CPU cores (a worker is pinned to that many cores and runs that many torch
    threads); `gpus`: 0, 1, or a fraction 1/k to put k workers on one GPU (small models); `memory_gb`, `time_min`:
    the SLURM request per trial (its time limit; a timed-out trial is requeued and resumes)."""

    threads: int = 1
    gpus: float = 0
    memory_gb: float = 4
    time_min: int = 60


@dataclass
class Launcher:
    """Where trials run (submitit).

    Args:
        kind: `local` (W worker processes on this machine, each pinned to its cores or its GPU), `slurm` (an array
            job, one task per trial, `workers` at a time), or `inline` (this process, for debugging).
        workers: trials at once.
        cores: the cores `local` workers are pinned to (default: the cores this process may use).
        partition: SLURM's partition (`sbatch --partition`).
        account: SLURM's account (`sbatch --account`).
        qos: SLURM's quality of service (`sbatch --qos`).
        slurm_options: more `sbatch` options, e.g. `{constraint: a100}` (submitit's `slurm_additional_parameters`).
        wait: `slurm`: wait for the array to end (else submit and return; `lit-vir sweep status` follows it).
        max_retries: times a crashed trial (an error, or a worker killed, e.g. by the OOM killer) is run again;
            an interrupted one (SIGTERM, preemption, time-out) always resumes and does not count.
        retry_failed: at the start of this run, enqueue again the trials that failed for good (a configuration
            error, a deterministic stop, crashes beyond `max_retries`), once their cause is fixed; each resumes
            from its last.ckpt where it has one.
        heartbeat_s: seconds between a running trial's heartbeats; one silent for `grace_s` is taken as crashed.
    """

    kind: Literal["local", "slurm", "inline"] = "local"
    workers: int = 1
    cores: list[int] | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    slurm_options: dict[str, Any] = field(default_factory=dict)
    wait: bool = True
    max_retries: int = 2
    retry_failed: bool = False
    heartbeat_s: float = 30
    grace_s: float = 180


@dataclass
class SweepSpec:
    """A sweep: `name`, the runs' `base` config pieces and `overrides`, a `grid` and/or a `search`, what to
    optimise (`metric`, `direction`), the `pruner`, per-trial `resources`, the `launcher` and the `storage`.

    Args:
        name: the sweep's name: its folder is `<out>/<name>` and its studies are named after it.
        base: config pieces of every trial (`-c` of `lit-vir fit`, merged left to right).
        overrides: dotted keys of every trial, e.g. `{trainer.max_epochs: 5}`.
        metric: what a trial is scored by: the best value of this logged metric over its validations.
        direction: `maximize` or `minimize`.
        out: the folder that holds the sweep's folder.
        storage: an Optuna storage URL for several machines, e.g. `postgresql+psycopg2://user@host/db`, with no
            password in it (libpq reads PGPASSWORD or ~/.pgpass); default: SQLite in the sweep's folder.
        storage_file: a file holding the storage URL (which may then carry a password); never printed.
    """

    name: str = "sweep"
    base: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    grid: Grid = field(default_factory=Grid)
    search: Search | None = None
    pruner: Pruner = field(default_factory=Pruner)
    metric: str = "val/acc"
    direction: Literal["maximize", "minimize"] = "maximize"
    resources: Resources = field(default_factory=Resources)
    launcher: Launcher = field(default_factory=Launcher)
    out: str = "sweeps"
    storage: str | None = None
    storage_file: str | None = None

    @property
    def folder(self) -> Path:
        return Path(self.out) / self.name

    def check(self) -> None:
        """What can be told from the spec alone; `lit_vir.sweep.validate` then asks the model about each value."""
        if not NAME.match(self.name):
            raise ConfigError(f"name = {self.name!r}: use letters, digits and _ . + = - only (it names a folder).")
        for row in self.grid.rows:
            if not NAME.match(row):
                raise ConfigError(f"grid.rows: row name {row!r}: use letters, digits and _ . + = - only.")
        for key, values in self.grid.params.items():
            if not values:
                raise ConfigError(f"grid.params.{key}: no values; list at least one.")
        for name, row in self.grid.rows.items():
            for key, values in row.params.items():
                if not values:
                    raise ConfigError(f"grid.rows.{name}.params.{key}: no values; list at least one.")
        if len(set(self.grid.seeds)) != len(self.grid.seeds):
            raise ConfigError(f"grid.seeds = {self.grid.seeds}: a seed is repeated.")
        if self.search is not None:
            if self.search.n_trials < 1:
                raise ConfigError(f"search.n_trials = {self.search.n_trials} is outside the allowed range [1, inf).")
            for key, param in self.search.space.items():
                param.check(key)
        elif self.pruner.kind == "wilcoxon":
            raise ConfigError("pruner.kind = 'wilcoxon' compares a trial's seeds: it needs a search (search: ...).")
        launcher = self.launcher
        if launcher.workers < 1:
            raise ConfigError(f"launcher.workers = {launcher.workers} is outside the allowed range [1, inf).")
        if self.resources.threads < 1:
            raise ConfigError(f"resources.threads = {self.resources.threads} is outside the allowed range [1, inf).")
        gpus = self.resources.gpus
        if gpus < 0 or (0 < gpus < 1 and abs(1 / gpus - round(1 / gpus)) > 0.01):
            raise ConfigError(
                f"resources.gpus = {self.resources.gpus}: give 0, 1, or 1/k to share a GPU among k workers."
            )
        if self.resources.gpus > 1:
            raise ConfigError(
                f"resources.gpus = {self.resources.gpus}: a trial runs in its worker's process, on one GPU at most; "
                "run multi-GPU training with `lit-vir fit` and torchrun (scripts/torchrun_ddp.sh)."
            )
        if launcher.max_retries < 0:
            raise ConfigError(f"launcher.max_retries = {launcher.max_retries} is outside the allowed range [0, inf).")
        if not 0 < launcher.heartbeat_s < launcher.grace_s:
            raise ConfigError(
                f"launcher.heartbeat_s = {launcher.heartbeat_s} must be positive and below launcher.grace_s = "
                f"{launcher.grace_s}."
            )
        if self.storage and self.storage_file:
            raise ConfigError("give storage or storage_file, not both.")


@dataclass(frozen=True)
class Cell:
    """One point of the grid without its seed: a study of a search, or the seeds' common part of a grid's trials.

    `name` names its runs' folder; `params` are its coordinates as they appear among a trial's parameters."""

    name: str
    argv: tuple[str, ...]
    params: tuple[tuple[str, Any], ...]


def as_argv(overrides: dict[str, Any]) -> list[str]:
    """Dotted overrides as `lit-vir fit` arguments: `{a.b: 3}` → `["--a.b", "3"]` (lists and dicts as YAML flow)."""
    argv = []
    for key, value in overrides.items():
        if isinstance(value, str):
            text = value
        elif isinstance(value, bool) or value is None:
            text = yaml.safe_dump(value).splitlines()[0]  # true / false / null
        else:
            text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        argv += [f"--{key.removeprefix('--')}", text]
    return argv


def short(value: Any) -> str:
    """A value as it appears in a folder name: `0.9`, `1e-3`, `cifar10`."""
    if isinstance(value, str):
        return Path(value).stem if value.endswith((".yaml", ".yml")) else value
    return f"{value:g}" if isinstance(value, float) else str(value)


def cells(spec: SweepSpec) -> list[Cell]:
    """The grid without its seeds, in spec order: for each row, datasets × params (the grid's and the row's own).
    Each cell's argv (after the base pieces) is its row's pieces, its data piece, then the sweep's overrides, its
    row's and its params (later wins)."""
    rows = list(spec.grid.rows.items()) or [("", Row())]
    datasets = spec.grid.datasets or [""]
    found = []
    for row_name, row in rows:
        grid = {**spec.grid.params, **row.params}
        keys = list(grid)
        for dataset, values in itertools.product(datasets, itertools.product(*grid.values())):
            argv = []
            for piece in [*row.pieces, *([dataset] if dataset else [])]:
                argv += ["-c", piece]
            argv += as_argv(spec.overrides) + as_argv(row.overrides) + as_argv(dict(zip(keys, values, strict=True)))
            params = ([("row", row_name)] if row_name else []) + ([("dataset", short(dataset))] if dataset else [])
            params += [(key, value) for key, value in zip(keys, values, strict=True)]
            label = "-".join(short(value) if key != "row" else value for key, value in params) or spec.name
            found.append(Cell(label, tuple(argv), tuple(params)))
    names = [cell.name for cell in found]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(
            f"grid: cells share a name ({', '.join(repeated)}): give the data pieces distinct file names."
        )
    return found


def spec_parser(prog: str = "lit-vir sweep", description: str = "", epilog: str = "") -> jsonargparse.ArgumentParser:
    """The spec's parser: `-c` (several, merged left to right), `--print_config`, dotted overrides, type errors
    naming the key — as every lit-vir config."""
    from lit_vir.config import PARSER_MODE, HelpFormatter

    parser = jsonargparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter, parser_mode=PARSER_MODE
    )
    parser.add_argument("-c", "--config", action=jsonargparse.ActionConfigFile, help="a sweep spec (YAML); repeatable")
    parser.add_class_arguments(SweepSpec)
    return parser


def spec_of(parser: jsonargparse.ArgumentParser, config: jsonargparse.Namespace) -> SweepSpec:
    values = parser.instantiate(config)
    names = {option.name for option in dataclasses.fields(SweepSpec)}
    return SweepSpec(**{key: value for key, value in values.items() if key in names})


def absolute(spec: SweepSpec) -> SweepSpec:
    """The spec with every config piece and the output folder as absolute paths, so a worker started elsewhere
    (a SLURM node, another directory) reads the same files."""
    resolve = lambda path: str(Path(path).expanduser().resolve())  # noqa: E731
    grid = dataclasses.replace(
        spec.grid,
        rows={
            name: dataclasses.replace(row, pieces=[resolve(p) for p in row.pieces])
            for name, row in spec.grid.rows.items()
        },
        datasets=[resolve(path) for path in spec.grid.datasets],
    )
    return dataclasses.replace(spec, base=[resolve(p) for p in spec.base], grid=grid, out=resolve(spec.out))


def as_dict(spec: SweepSpec) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(spec)))


def write_spec(spec: SweepSpec, path: Path) -> None:
    """Save the resolved spec (atomically): what every worker reads, and what a rerun is checked against."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(yaml.safe_dump(as_dict(spec), sort_keys=False, allow_unicode=True))
    os.replace(temporary, path)


def read_spec(*paths: str | Path) -> SweepSpec:
    """The spec of one or more YAML files, merged left to right as `-c` does."""
    parser = spec_parser()
    return spec_of(parser, parser.parse_args([argument for path in paths for argument in ("-c", str(path))]))
