"""`lit-vir attention`: how similar consecutive layers' attention maps are — ViT against ReViT.

ReViT (Diko et al. 2024) is motivated by attention collapse: in deep ViTs, later blocks attend alike.
For each checkpoint this takes one batch of test images, reads every block's attention maps and
reports the cosine similarity of consecutive blocks' maps (`lit_vir.analysis.attention`), as a table,
JSON and one plot with a line per model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonargparse
import torch
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from lit_vir.analysis.attention import attention_maps, cross_layer_similarity
from lit_vir.checks import check_range
from lit_vir.commands.common import checkpoint_label, test_batches, test_datamodule
from lit_vir.config import checkpoint_tool_parser, user_errors
from lit_vir.training.checkpoints import load_classifier

EXAMPLES = """\
examples:
  lit-vir attention --ckpt_path logs/visiontransformer-cifar10/version_0/checkpoints/last.ckpt \\
                    --ckpt_path logs/revit-cifar10/version_0/checkpoints/last.ckpt
  lit-vir attention --ckpt_path X.ckpt -c configs/data/mnist.yaml --images 64 --output attention

The test images come from the first checkpoint's run config.yaml unless a data piece is given (-c, with
--data... overrides as for `lit-vir fit`).
Writes attention_similarity.json and attention_similarity.png to --output.
"""


def parser() -> jsonargparse.ArgumentParser:
    parse = checkpoint_tool_parser("lit-vir attention", __doc__, EXAMPLES, data="the test images")
    parse.add_argument("--ckpt_path", action="append", required=True, help="a ViT-family checkpoint (repeat)")
    parse.add_argument("--images", type=int, default=32, help="test images the maps are averaged over")
    parse.add_argument("--output", default="attention", help="folder for the result files")
    return parse


def similarity_figure(curves: dict[str, list[float]]) -> Figure:
    figure = Figure(figsize=(5.5, 3.6))
    axes = figure.subplots()
    for name, values in curves.items():
        axes.plot(range(1, len(values) + 1), values, marker="o", label=name)
    axes.set_xlabel("block pair (l, l+1)")
    axes.set_ylabel("cosine similarity of attention maps")
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


@user_errors()  # lit-vir's one-line messages and exit codes for what a user can fix
def main(argv: list[str]) -> None:
    parse = parser()
    arguments = parse.parse_args(argv)
    check_range("attention", "images", arguments.images, low=1, hint="Average over at least 1 test image.")
    checkpoints = [Path(path) for path in arguments.ckpt_path]
    datamodule = test_datamodule(parse, arguments, checkpoints[0])
    images = torch.cat([batch[0] for batch in test_batches(datamodule)])[: arguments.images]
    curves = {}
    for checkpoint in checkpoints:
        backbone = load_classifier(checkpoint).backbone.eval()
        if not hasattr(backbone, "blocks"):
            raise SystemExit(
                f"lit-vir attention: {checkpoint} holds a {type(backbone).__name__}, not a ViT-family model"
            )
        with torch.no_grad():
            curves[checkpoint_label(checkpoint, backbone)] = cross_layer_similarity(
                attention_maps(backbone, images)
            ).tolist()
    output = Path(arguments.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "attention_similarity.json").write_text(json.dumps(curves, indent=2))
    similarity_figure(curves).savefig(output / "attention_similarity.png", dpi=130)
    table = Table(title=f"Attention similarity of consecutive blocks ({len(images)} test images)")
    table.add_column("model")
    pairs = max(len(values) for values in curves.values())
    for pair in range(pairs):
        table.add_column(f"{pair + 1}→{pair + 2}", justify="right")
    table.add_column("mean", justify="right", style="bold")
    for name, values in curves.items():
        mean = sum(values) / len(values) if values else float("nan")
        table.add_row(name, *[f"{value:.3f}" for value in values], *[""] * (pairs - len(values)), f"{mean:.3f}")
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    console.print(f"wrote {output}/attention_similarity.json, attention_similarity.png")
