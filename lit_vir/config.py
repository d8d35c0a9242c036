"""How a config becomes objects, for `lit-vir fit` and for every `lit-vir` tool.

One jsonargparse setup (omegaconf+ parsing, lit_vir's help layout); the sections of a run config — seed,
trainer, model, data, with the datamodule's shape linked into the model and lit_vir's default callbacks;
and one way a bad value reaches the user: a `ConfigError` as `lit-vir: invalid configuration: ...` (exit 2),
missing or corrupt data files, an unreadable checkpoint or a non-finite loss as `lit-vir: ...` (exit 1).

`lit_vir.cli` builds `fit`'s parser through LightningCLI with these pieces; each tool builds its own with
`tool_parser`, so `-c/--config` (several, merged left to right), `--print_config`, dotted overrides and
their errors are the same everywhere. `build` turns a parsed config into the model and the datamodule, as
`fit` would, without a trainer.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import jsonargparse
import lightning
from jsonargparse import ActionConfigFile, DefaultHelpFormatter
from lightning.fabric.utilities.seed import seed_everything
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LRSchedulerTypeTuple
from torch.optim import Optimizer

from lit_vir.checks import ConfigError, find_config_error
from lit_vir.data.base import ImageDataModule
from lit_vir.data.files import CorruptDatasetFile, DatasetFilesMissing
from lit_vir.training.checkpoints import CheckpointError
from lit_vir.training.guards import NonFiniteLossError, ReservoirMismatchError
from lit_vir.training.module import ImageClassifier

__all__ = [
    "DEFAULT_CALLBACKS",
    "DEFAULT_LOGGER",
    "DEFAULT_PLUGINS",
    "LINKED_FROM_DATA",
    "PARSER_MODE",
    "SEED",
    "HelpFormatter",
    "add_flag",
    "add_run_options",
    "build",
    "build_from_config",
    "config_errors",
    "tool_parser",
    "user_errors",
]


def _accept_linked_targets(add_function_arguments):
    """jsonargparse 4.53 passes `linked_targets` to `add_function_arguments` when a linked target's class_path
    is a function (a preset such as `lit_vir.models.vit_small`), which does not take it; drop it."""

    def add(self, function, *args, linked_targets=None, **kwargs):
        return add_function_arguments(self, function, *args, **kwargs)

    return add


jsonargparse.ArgumentParser.add_function_arguments = _accept_linked_targets(
    jsonargparse.ArgumentParser.add_function_arguments
)
jsonargparse.set_parsing_settings(omegaconf_absolute_to_relative_paths=True)

PARSER_MODE = "omegaconf+"  # `${...}` interpolation, resolved after the pieces are merged
SEED = 42  # `seed_everything`'s default: a run is reproducible unless told otherwise
DEFAULT_LOGGER = {
    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
    "init_args": {"save_dir": "logs", "name": None, "default_hp_metric": False},
}
DEFAULT_CALLBACKS = [
    {
        "class_path": "lit_vir.training.checkpoints.ResumableModelCheckpoint",
        "init_args": {
            "monitor": "val/acc",
            "mode": "max",
            "save_last": True,
            "save_on_exception": True,
            "filename": "epoch{epoch:03d}-val_acc{val/acc:.4f}",
            "auto_insert_metric_name": False,
        },
    },
    {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor", "init_args": {"logging_interval": "epoch"}},
    {"class_path": "lit_vir.training.callbacks.resources.ResourceMonitor"},
    {"class_path": "lit_vir.training.callbacks.flops.TrainingFlops"},
    {"class_path": "lit_vir.training.callbacks.reservoir_checksum.ReservoirChecksum"},
    {"class_path": "lit_vir.training.callbacks.test_predictions.TestPredictions"},
    {"class_path": "lightning.pytorch.callbacks.RichProgressBar"},
    {"class_path": "lightning.pytorch.callbacks.RichModelSummary", "init_args": {"max_depth": 2}},
]
DEFAULT_PLUGINS = [{"class_path": "lit_vir.training.checkpoints.AtomicCheckpointIO"}]
LINKED_FROM_DATA = ("num_classes", "image_size", "in_channels")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help, with the description and examples kept as written."""


def add_run_options(parser: LightningArgumentParser) -> None:
    """What lit_vir adds to LightningCLI's run sections: `--test_after_fit`, the datamodule's shape linked into
    the model (never typed twice; an override of a linked field is ignored), and the default logger,
    callbacks and plugins."""
    parser.add_argument(
        "--test_after_fit",
        type=bool,
        default=False,
        help="After `fit`, test the best checkpoint (by val/acc) on the test split.",
    )
    parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
    for name in LINKED_FROM_DATA:
        parser.link_arguments(f"data.{name}", f"model.init_args.backbone.init_args.{name}", apply_on="instantiate")
    parser.set_defaults(
        {"trainer.logger": DEFAULT_LOGGER, "trainer.callbacks": DEFAULT_CALLBACKS, "trainer.plugins": DEFAULT_PLUGINS}
    )


def add_run_sections(parser: LightningArgumentParser, model_required: bool) -> None:
    """The sections of `fit`'s parser, as LightningCLI adds them (`seed_everything`, `trainer`, `model`, `data`,
    its `optimizer` and `lr_scheduler`) plus `add_run_options`: every config `fit` takes parses here."""
    parser.add_argument(
        "--seed_everything",
        type=bool | int,
        default=SEED,
        help="Set to an int to run seed_everything with this value before classes instantiation."
        "Set to True to use a random seed.",
    )
    parser.add_lightning_class_args(Trainer, "trainer")
    parser.add_lightning_class_args(ImageClassifier, "model", subclass_mode=True, required=model_required)
    parser.add_lightning_class_args(ImageDataModule, "data", subclass_mode=True, required=False)
    add_run_options(parser)
    parser.add_optimizer_args((Optimizer,))
    parser.add_lr_scheduler_args(LRSchedulerTypeTuple)


def tool_parser(
    prog: str,
    description: str,
    examples: str,
    sections: Literal["run", "data"] | None = None,
    config_help: str = "a config file (YAML) of this command's options; several are merged left to right",
) -> LightningArgumentParser:
    """A tool's parser: `-c/--config` and `--print_config` as in `fit`; with `sections="run"` also fit's whole
    run config (`--model...`, `--data...`, `--trainer...`, overrides and all), with `sections="data"` its
    `data` section only (the model comes from a checkpoint)."""
    parser = LightningArgumentParser(
        prog=prog,
        description=description,
        epilog=examples,
        formatter_class=HelpFormatter,
        parser_mode=PARSER_MODE,
        dump_header=[f"lightning.pytorch=={lightning.__version__}"],
    )
    parser.add_argument("-c", "--config", action=ActionConfigFile, help=config_help)
    if sections == "run":
        add_run_sections(parser, model_required=False)
    elif sections == "data":
        parser.add_lightning_class_args(ImageDataModule, "data", subclass_mode=True, required=False)
    return parser


def checkpoint_tool_parser(prog: str, module_doc: str, examples: str, data: str) -> LightningArgumentParser:
    """The parser of a tool that reads checkpoints and fit's `data` section (attention, perturb, quantize): the
    description is the first paragraph of the tool's module docstring; `data` says what the data piece gives."""
    return tool_parser(
        prog,
        module_doc.split("\n\n")[0],
        examples,
        sections="data",
        config_help=f"a data piece giving {data}, or a config of this command's options (repeatable)",
    )


def add_flag(parser: jsonargparse.ArgumentParser, name: str, help: str) -> None:
    """A yes/no option that is off by default: `--name` alone turns it on, `--name true|false` as in `fit`."""
    parser.add_argument(name, type=bool, nargs="?", const=True, default=False, help=help)


@contextmanager
def config_errors() -> Iterator[None]:
    """A ConfigError — however deep jsonargparse wrapped it — as `lit-vir: invalid configuration: ...`, exit 2."""
    try:
        yield
    except Exception as error:
        config_error = find_config_error(error)
        if config_error is None:
            raise
        print(f"lit-vir: invalid configuration: {config_error}", file=sys.stderr)
        raise SystemExit(2) from None


@contextmanager
def user_errors() -> Iterator[None]:
    """What a user can fix, said in one line without a traceback: missing or corrupt data, a bad checkpoint, a
    diverged run (exit 1), or a bad value found late, e.g. once the data are known a cache that cannot fit (exit 2)."""
    try:
        yield
    except (
        DatasetFilesMissing,
        CorruptDatasetFile,
        CheckpointError,
        NonFiniteLossError,
        ReservoirMismatchError,
    ) as error:
        print(f"lit-vir: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except ConfigError as error:
        print(f"lit-vir: invalid configuration: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def build(
    parser: jsonargparse.ArgumentParser, config: jsonargparse.Namespace
) -> tuple[ImageClassifier | None, ImageDataModule | None]:
    """The model and the datamodule of a parsed config (None where the config has none), built as `fit` builds
    them — seeded by `seed_everything`, the data's shape linked into the model — without a trainer; a bad value
    stops here, before any data is read."""
    config = config.clone()
    seed = config.get("seed_everything", False)
    if seed is not False:
        seed_everything(None if seed is True else seed, workers=True)
    config.pop("trainer", None)  # a tool has no trainer: its callbacks and logger are not built
    with config_errors():
        objects = parser.instantiate(config)
    return objects.get("model"), objects.get("data")


def build_from_config(args: list[str]) -> tuple[ImageClassifier, ImageDataModule]:
    """Model and datamodule from config files and overrides (`["-c", "configs/vir.yaml", ...]`), as `fit`
    would build them, without training."""
    parser = tool_parser("lit-vir", "", "", sections="run")
    model, datamodule = build(parser, parser.parse_args(args))
    if model is None:
        raise ConfigError(f"no model in {' '.join(args)}: give a config with a `model:` section")
    return model, datamodule
