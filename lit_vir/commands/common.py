"""What the `lit-vir` tools that evaluate checkpoints share: how they find a run's data and read its test split.

Their parsers come from `lit_vir.config.tool_parser` (with `sections="data"`); `datamodule_from_configs` reads
the `data:` section of saved run configs through that same parser.
"""

from __future__ import annotations

from pathlib import Path

import jsonargparse
import torch
import yaml

from lit_vir.config import build, tool_parser
from lit_vir.data.base import ImageDataModule

__all__ = [
    "checkpoint_label",
    "datamodule_from_configs",
    "run_config",
    "test_batches",
    "test_datamodule",
]


def run_config(checkpoint: Path) -> Path:
    """The config.yaml LightningCLI saved in the run folder that holds `checkpoints/<file>`."""
    path = Path(checkpoint).resolve().parent.parent / "config.yaml"
    if not path.is_file():
        raise SystemExit(f"lit-vir: no {path} beside the checkpoint; give the data with -c configs/data/<dataset>.yaml")
    return path


def datamodule_from_configs(paths: list[str | Path]) -> ImageDataModule:
    """The datamodule of the `data:` sections of config files, merged left to right as `-c` does (a saved
    run's config.yaml, or data pieces); nothing else in the files is read. Parsed and built by the same `data`
    section as every tool's, with the same errors."""
    parser = tool_parser("lit-vir", "", "", sections="data")
    config = None
    for path in paths:
        section = (yaml.safe_load(Path(path).read_text()) or {}).get("data")
        if section is not None:
            config = parser.parse_object({"data": section}, cfg_base=config)
    if config is None:
        raise SystemExit(f"lit-vir: no `data:` section in {', '.join(map(str, paths))}")
    return build(parser, config)[1]


def test_datamodule(
    parser: jsonargparse.ArgumentParser, config: jsonargparse.Namespace, checkpoint: Path
) -> ImageDataModule:
    """The datamodule of the command's `data` section (`-c` data pieces, `--data...` overrides), else the one
    the checkpoint's run was trained on (the `data:` of its saved config.yaml)."""
    if config.data is not None:
        return build(parser, config)[1]
    return datamodule_from_configs([run_config(checkpoint)])


def test_batches(datamodule: ImageDataModule, limit: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The test split's batches (the first `limit` only, if given), read once for repeated evaluations."""
    datamodule.prepare_data()
    datamodule.setup("test")
    batches = []
    for index, batch in enumerate(datamodule.test_dataloader()):
        if limit is not None and index >= limit:
            break
        batches.append(batch)
    return batches


def checkpoint_label(checkpoint: Path, backbone: torch.nn.Module) -> str:
    """`ViR-3 (vir-mnist/version_0)`: the backbone and depth, and the run the checkpoint belongs to."""
    depth = getattr(backbone, "depth", None)
    run = "/".join(Path(checkpoint).resolve().parts[-4:-2])
    return f"{type(backbone).__name__}{f'-{depth}' if depth else ''} ({run})"
