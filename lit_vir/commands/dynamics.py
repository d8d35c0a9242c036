"""`lit-vir dynamics`: the reservoir dynamics of a ViR, from a config or a checkpoint, without training.

For every reservoir — each of the L of a parallel bank, each core of a serial ViR — it measures the
largest Lyapunov exponent (Jacobian and perturbation methods), the short-term memory capacity, the
spectral radius, the small-world measures C, L, σ, ω (weighted graph and strongest-edges graph), the
echo-state check and state statistics (definitions and costs: `lit_vir.analysis`), prints one table per
reservoir and writes everything to JSON.

The Lyapunov exponents, echo-state check and state statistics are driven by the real tokens of a batch
of test images — from the config's datamodule, or for a checkpoint from the run's saved `config.yaml`
(or `--data_config`) — as each reservoir sees them (serial core i reads core i−1's outputs). `--iid`
drives every reservoir with the i.i.d. scalar protocol instead (no data needed). The memory capacity
always uses the i.i.d. protocol.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, NoReturn

import jsonargparse
import torch
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from torch import nn

from lit_vir.analysis.cores import ReservoirCore, reservoir_cores
from lit_vir.analysis.report import MEASURES, AnalysisSettings, core_header
from lit_vir.checks import check_range
from lit_vir.commands.common import datamodule_from_configs
from lit_vir.config import add_flag, build, tool_parser, user_errors
from lit_vir.data.base import ImageDataModule
from lit_vir.data.files import CorruptDatasetFile, DatasetFilesMissing
from lit_vir.models.vir import ViR
from lit_vir.training.checkpoints import load_classifier

__all__ = ["main"]

EXAMPLES = """\
examples:
  lit-vir dynamics -c configs/vir.yaml --output dynamics.json
  lit-vir dynamics -c configs/vir.yaml -c configs/depth/3.yaml -c configs/model/vir_serial.yaml
  lit-vir dynamics -c configs/vir.yaml --model.backbone.init_args.spectral_radius 1.2 --iid
  lit-vir dynamics --ckpt_path logs/vir-mnist/version_0/checkpoints/last.ckpt --output dynamics.json
  lit-vir dynamics --ckpt_path X.ckpt -c configs/data/fashion_mnist.yaml    # test images from another dataset
  lit-vir dynamics -c configs/vir.yaml --iid --print_config > dynamics.yaml  # then: lit-vir dynamics -c dynamics.yaml
  lit-vir dynamics -c configs/quickstart.yaml --measures lyapunov memory --jacobian_samples 16

config overrides (--model..., --data..., --trainer...) apply as for `lit-vir fit`; with --ckpt_path the
checkpoint holds the model, and -c gives only the data of the test images.
"""

# (field, label) rows of the table printed per reservoir.
TABLE_ROWS = (
    ("lyapunov_jacobian", "λ, Jacobian method (per step)"),
    ("lyapunov_perturbation", "λ, perturbation method (per step)"),
    ("memory_capacity", "memory capacity MC"),
    ("spectral_radius", "spectral radius ρ(W)"),
    ("weighted_clustering", "C, weighted graph"),
    ("weighted_path_length", "L, weighted graph (distance 1/|w|)"),
    ("weighted_sigma", "σ, weighted graph"),
    ("weighted_omega", "ω, weighted graph"),
    ("strongest_clustering", "C, strongest-edges graph"),
    ("strongest_path_length", "L, strongest-edges graph (hops)"),
    ("strongest_sigma", "σ, strongest-edges graph"),
    ("strongest_omega", "ω, strongest-edges graph"),
    ("echo_state_distance", "echo-state distance ‖h_T − h'_T‖ / ‖h_0 − h'_0‖"),
    ("state_mean_abs", "mean |h|"),
    ("state_std", "std of h"),
    ("state_saturated_fraction", "saturated fraction (|h| > 0.99)"),
    ("state_mean_gain", "mean gain 1 − s²"),
)


def build_parser() -> jsonargparse.ArgumentParser:
    parser = tool_parser(
        "lit-vir dynamics",
        __doc__.split("\n\n", 1)[1],
        EXAMPLES,
        sections="run",
        config_help="config file(s) as for `lit-vir fit`, merged in order (what to analyse: these or --ckpt_path)",
    )
    source = parser.add_argument_group("a checkpoint instead of a config")
    source.add_argument("--ckpt_path", type=Path | None, default=None, help="a checkpoint written by `lit-vir fit`")
    source.add_argument(
        "--data_config",
        type=Path | None,
        default=None,
        help="a YAML with a `data:` section for the test images (default: the run's config.yaml beside checkpoints/)",
    )
    inputs = parser.add_argument_group("inputs")
    add_flag(inputs, "--iid", "drive with i.i.d. scalar input instead of test images")
    inputs.add_argument("--images", type=int, default=8, help="test images whose tokens drive the reservoirs")
    budgets = parser.add_argument_group("budgets (defaults: at most ~7 s per measure at N = 1000 on one CPU core)")
    defaults = AnalysisSettings()
    for setting in fields(AnalysisSettings):
        budgets.add_argument(
            f"--{setting.name}", type=int, default=getattr(defaults, setting.name), help=setting.metadata["help"]
        )
    parser.add_argument("--measures", nargs="+", choices=list(MEASURES), default=list(MEASURES), help="the measures")
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="where the reservoirs run"
    )
    parser.add_argument("--output", type=Path | None, default=None, help="write the results to this JSON file")
    return parser


@user_errors()  # lit-vir's one-line messages and exit codes for what a user can fix
def main(argv: list[str]) -> None:
    parser = build_parser()
    options = parser.parse_args(argv)
    if (options.model is None) == (options.ckpt_path is None):
        fail("give config files (-c) or a checkpoint (--ckpt_path), not both and not neither", code=2)
    check_range("dynamics", "images", options.images, low=1, hint="Give at least 1 image.")
    settings = AnalysisSettings(**{setting.name: options[setting.name] for setting in fields(AnalysisSettings)})

    backbone, datamodule = load_backbone(parser, options)
    if not isinstance(backbone, ViR):
        fail(f"the backbone is a {type(backbone).__name__}, not a ViR: there is no reservoir to analyse", code=2)
    backbone = backbone.to(options.device)
    images = None if options.iid else first_test_images(datamodule, options.images)
    console = Console()
    results = analyse(reservoir_cores(backbone, images), options.measures, settings, console)
    for record in results:
        console.print(result_table(record, backbone))
    if options.output is not None:
        configs = {"configs": [str(path) for path in options.config or []]}
        source = {"checkpoint": str(options.ckpt_path)} if options.ckpt_path else configs
        report = {
            "source": {**source, "arguments": argv},
            "mode": backbone.mode,
            "depth": backbone.depth,
            "topology": topology(backbone),
            "images": 0 if images is None else images.shape[0],
            "settings": asdict(settings),
            "reservoirs": results,
        }
        options.output.parent.mkdir(parents=True, exist_ok=True)
        options.output.write_text(json.dumps(report, indent=2))
        console.print(f"wrote {options.output}")


def analyse(
    cores: list[ReservoirCore], measures: list[str], settings: AnalysisSettings, console: Console
) -> list[dict[str, Any]]:
    """The fields of every measure for every core, with the seconds each took, under a Rich progress bar."""
    results = []
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("dynamics", total=len(cores) * len(measures))
        for core in cores:
            record: dict[str, Any] = {**core_header(core), "seconds": {}}
            for name in measures:
                progress.update(task, description=f"{core.name}: {name}")
                start = time.perf_counter()
                record.update(MEASURES[name](core, settings))
                record["seconds"][name] = round(time.perf_counter() - start, 3)
                progress.advance(task)
            results.append(record)
    return results


def load_backbone(
    parser: jsonargparse.ArgumentParser, options: jsonargparse.Namespace
) -> tuple[nn.Module, ImageDataModule | None]:
    """The backbone and the datamodule that supplies test images: both from the config, or the checkpoint's
    backbone with the data of `-c` data pieces, `--data_config` or the run's config.yaml (none with --iid)."""
    if options.ckpt_path is None:
        classifier, datamodule = build(parser, options)
        return classifier.backbone, datamodule
    backbone = load_classifier(options.ckpt_path).backbone
    if options.iid:
        return backbone, None
    if options.data is not None:
        return backbone, build(parser, options)[1]
    data_config = options.data_config or options.ckpt_path.resolve().parent.parent / "config.yaml"
    return backbone, datamodule_from_yaml(data_config)


def datamodule_from_yaml(path: Path) -> ImageDataModule:
    """The datamodule of a config file's `data:` section (a saved run's config.yaml, or a data piece)."""
    if not path.is_file():
        fail(f"no data config {path} to take test images from; give --data_config FILE or --iid")
    if (yaml.safe_load(path.read_text()) or {}).get("data") is None:
        fail(f"{path} has no `data:` section; give --data_config FILE or --iid")
    return datamodule_from_configs([path])


def first_test_images(datamodule: ImageDataModule | None, count: int) -> torch.Tensor:
    """The first `count` images of the datamodule's test split (B, C, H, W)."""
    if datamodule is None:
        fail("no datamodule to take test images from; give --iid to drive with i.i.d. input")
    try:
        datamodule.prepare_data()
        datamodule.setup("test")
    except (DatasetFilesMissing, CorruptDatasetFile) as error:
        fail(f"cannot read the test images: {error}\nGive --iid to drive the reservoirs with i.i.d. input instead.")
    dataset = datamodule.test_set
    return torch.stack([dataset[index][0] for index in range(min(count, len(dataset)))])


def result_table(record: dict[str, Any], backbone: ViR) -> Table:
    title = (
        f"{record['name']} of a {backbone.mode} ViR-{backbone.depth}, {topology(backbone)}: N = {record['num_nodes']}, "
    )
    title += f"driven by {'test-image tokens' if record['drive'] == 'tokens' else 'i.i.d. input'}"
    table = Table(title=title, title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for field, label in TABLE_ROWS:
        if field in record:
            table.add_row(label, f"{record[field]:.4g}")
    return table


def topology(backbone: ViR) -> str | None:
    """The topology of the backbone's reservoirs (`ReservoirOptions.topology`; None without a reservoir)."""
    return backbone.reservoirs[0].options.topology if backbone.use_reservoir else None


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"lit-vir dynamics: {message}", file=sys.stderr)
    raise SystemExit(code)
