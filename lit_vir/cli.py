"""The `lit-vir` / `lightning` / `python -m lit_vir` command: LightningCLI plus lit_vir's own tools.

`fit`, `validate`, `test` and `predict` are LightningCLI subcommands over one `ImageClassifier` and
any `ImageDataModule`, configured by YAML files (`-c`, several merge left to right) and
command-line overrides. The datamodule's `num_classes`, `image_size` and `in_channels` are linked
into the model, so they are never typed twice (an override of a linked field is ignored: change
the dataset instead).
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import jsonargparse
from lightning import Callback, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lit_vir.config import (
    PARSER_MODE,
    SEED,
    HelpFormatter,
    add_run_options,
    build_from_config,
    config_errors,
    user_errors,
)
from lit_vir.data.base import ImageDataModule
from lit_vir.training.callbacks.corruption_report import CorruptionReport
from lit_vir.training.checkpoints import CheckpointError, read_checkpoint
from lit_vir.training.module import ImageClassifier
from lit_vir.training.provenance import SaveConfigAndEnvironment

__all__ = ["ViRCLI", "build_from_config", "main", "run"]


EXAMPLES = """\
examples:
  lit-vir fit -c configs/quickstart.yaml                      # ViR on digits, CPU, ~1 min
  lit-vir fit -c configs/vir.yaml                             # reference ViR on MNIST
  lit-vir fit -c configs/vir.yaml -c configs/data/cifar10.yaml -c configs/depth/3.yaml
  lit-vir fit -c configs/vir.yaml --model.backbone.init_args.spectral_radius 1.1
  lit-vir fit -c configs/vir.yaml --print_config              # the merged config, resolved
  lit-vir test -c configs/vir.yaml --ckpt_path logs/vir-mnist/version_0/checkpoints/last.ckpt
  lit-vir fit --help                                          # every option of a subcommand
"""

# lit_vir's own subcommands: name → (module with `main(argv)`, one line for `lit-vir --help`).
TOOLS: dict[str, tuple[str, str]] = {
    "attention": ("lit_vir.commands.attention", "similarity of consecutive layers' attention maps (ViT vs ReViT)"),
    "bench": ("lit_vir.commands.bench", "parameters, memory and speed of models, ViR against ViT"),
    "compare": ("lit_vir.commands.compare", "finished runs → comparison table (Markdown, CSV) and plots"),
    "dynamics": ("lit_vir.commands.dynamics", "reservoir dynamics (λ, MC, small-world) of a config or checkpoint"),
    "perturb": ("lit_vir.commands.perturb", "re-evaluate checkpoints with α, W, V perturbed (robustness)"),
    "quantize": ("lit_vir.commands.quantize", "MPTQ-ViT post-training quantisation: accuracy and size per bit width"),
    "slim": ("lit_vir.commands.slim", "ViT-Slim: slim a search checkpoint into smaller ViTs (params, FLOPs, speed)"),
    "sweep": ("lit_vir.commands.sweep", "grids and searches of many runs on Optuna, local or on SLURM, resumable"),
}


class ViRCLI(LightningCLI):
    """LightningCLI with lit_vir's links, defaults (TensorBoard under `logs/`, checkpointing, Rich)
    and `--test_after_fit`."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        add_run_options(parser)

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        """Parse, name the run, resolve `--ckpt_path last` to the newest run's last.ckpt, and check the
        checkpoint before anything loads it."""
        super().parse_arguments(parser, args)
        config = self.config[self.config.subcommand] if self.config.get("subcommand") else self.config
        drop_default_callbacks_that_conflict(config.trainer)
        logger = config.trainer.logger
        is_tensorboard = isinstance(logger, jsonargparse.Namespace) and logger.class_path.endswith("TensorBoardLogger")
        if is_tensorboard and logger.init_args.get("name") is None:
            logger.init_args.name = run_name(config)  # `<backbone>-<dataset>`, e.g. vir-mnist
        if config.get("ckpt_path") == "last" and is_tensorboard:
            config.ckpt_path, logger.init_args.version = last_checkpoint(logger.init_args)
        if config.get("ckpt_path") not in (None, "last", "best"):
            read_checkpoint(config.ckpt_path)

    def instantiate_classes(self) -> None:
        """Build model, data and trainer; a bad value stops here, before any data is read."""
        with config_errors():
            super().instantiate_classes()

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """A test run on a corruption benchmark (a datamodule with `cells`) always reports per cell."""
        trainer = super().instantiate_trainer(**kwargs)
        reports = any(isinstance(callback, CorruptionReport) for callback in trainer.callbacks)
        if hasattr(self.datamodule, "cells") and not reports:
            trainer.callbacks.append(CorruptionReport())
        return trainer

    def before_test(self) -> None:
        """A corruption benchmark's cells are reported by `CorruptionReport` in one table: skip Lightning's
        printout of one results column per cell (the metrics are still logged)."""
        if hasattr(self.datamodule, "cells"):
            self.config_init[self.subcommand]["verbose"] = False

    def after_fit(self) -> None:
        """With `--test_after_fit`, test the final weights (`test_last/*`: in memory, so a run stopped by
        `max_time` mid-epoch, or averaged by EMA at its end, is tested as it ended) and then the checkpoint
        that was best on validation (`test/*`); with no checkpoint saved (e.g. fast_dev_run), the final
        weights only, as `test/*`."""
        if not self.config[self.subcommand].get("test_after_fit"):
            return
        checkpoint = self.trainer.checkpoint_callback
        if checkpoint is None or not checkpoint.best_model_path:
            self.trainer.test(self.model, datamodule=self.datamodule)
            return
        with self.model.testing_as("test_last"):
            self.trainer.test(self.model, datamodule=self.datamodule)
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best")


def drop_default_callbacks_that_conflict(trainer: jsonargparse.Namespace) -> None:
    """Turning the progress bar or the logger off also removes the default callbacks that need them
    (Lightning refuses a RichProgressBar without a progress bar and a LearningRateMonitor without a logger)."""
    needs = {
        "RichProgressBar": trainer.get("enable_progress_bar") is False,
        "LearningRateMonitor": trainer.get("logger") in (False, None),
    }
    unwanted = {name for name, conflict in needs.items() if conflict}
    if trainer.get("callbacks") and unwanted:
        trainer.callbacks = [
            callback
            for callback in trainer.callbacks
            if not (isinstance(callback, jsonargparse.Namespace) and callback.class_path.rsplit(".", 1)[-1] in unwanted)
        ]


def last_checkpoint(logger: jsonargparse.Namespace) -> tuple[str, int]:
    """The last.ckpt of the run to resume — the logger's fixed version, else the newest version that has
    one — and that version, so the resumed run logs into the same folder."""
    root = Path(logger.save_dir) / (logger.name or "")
    version = logger.get("version")
    pattern = f"version_{version}" if version is not None else "version_*"
    found = sorted(root.glob(f"{pattern}/checkpoints/last.ckpt"), key=lambda path: int(path.parts[-3][8:]))
    if not found:
        raise CheckpointError(
            f"--ckpt_path last: no {root}/{pattern}/checkpoints/last.ckpt to resume. Run without --ckpt_path to "
            "start afresh, or give the checkpoint's path."
        )
    return str(found[-1]), int(found[-1].parts[-3][8:])


def run_name(config: jsonargparse.Namespace) -> str:
    """`<backbone class>-<dataset>` in lower case: `vir-mnist`, `visiontransformer-cifar10`."""
    backbone = config.model.init_args.backbone.class_path.rsplit(".", 1)[-1]
    data = config.data.class_path.rsplit(".", 1)[-1].removesuffix("DataModule")
    return f"{backbone}-{data}".lower()


class HideProductTips(logging.Filter):
    """Drop Lightning's advertising lines ("💡 Tip: ... litlogger") from the console."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip" not in record.getMessage()


def show_lit_vir_messages() -> None:
    """lit_vir's INFO messages (e.g. each rank's reservoir checksum) on stderr, once."""
    logger = logging.getLogger("lit_vir")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("lit_vir: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def tools_help() -> str:
    lines = [f"  {name:<12}{summary}" for name, (_, summary) in TOOLS.items()]
    return "\ntools (lit-vir TOOL --help for each):\n" + "\n".join(lines) + "\n" if lines else ""


def parser_kwargs() -> dict:
    return {
        "parser_mode": PARSER_MODE,
        "prog": "lit-vir",
        "description": "Train, evaluate and analyse Vision Reservoirs and ViTs with Lightning.",
        "epilog": EXAMPLES + tools_help(),
        "formatter_class": HelpFormatter,
    }


def run(args: Sequence[str] | None, callbacks: Sequence[Callback] = ()) -> ViRCLI:
    """`lit-vir fit|validate|test|predict ARGS` in this process (None: the command line's), with `callbacks` added
    to the configured ones (how `lit-vir sweep` attaches its Optuna reporter to a trial). Errors propagate."""
    return ViRCLI(
        ImageClassifier,
        ImageDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=SEED,
        save_config_callback=SaveConfigAndEnvironment,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"callbacks": list(callbacks)} if callbacks else None,
        parser_kwargs=parser_kwargs(),
        args=None if args is None else list(args),
    )


def main(args: list[str] | None = None) -> None:
    """Entry point of the console scripts; `args` (without the program name) allows in-process use."""
    argv = sys.argv[1:] if args is None else list(args)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(HideProductTips())
    show_lit_vir_messages()
    with user_errors():
        if argv and argv[0] in TOOLS:
            importlib.import_module(TOOLS[argv[0]][0]).main(argv[1:])
            return
        run(args)
