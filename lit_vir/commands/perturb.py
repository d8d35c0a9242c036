"""`lit-vir perturb`: re-evaluate trained checkpoints with their fixed hyperparameters perturbed.

The paper's second robustness test: how accuracy holds up when the reservoir is not the one trained
with — spectral radius rescaled, relative noise on W and V, V redrawn at another sparsity, W redrawn
with another seed — and, for ViT checkpoints, the same relative noise on the attention/MLP weights, so
ViR and ViT share one plot. Definitions: `lit_vir.robustness.perturb`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jsonargparse
import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from lit_vir.checks import check_range
from lit_vir.commands.common import checkpoint_label, test_batches, test_datamodule
from lit_vir.config import checkpoint_tool_parser, user_errors
from lit_vir.robustness.perturb import KINDS, RESERVOIR_KINDS, Perturbation, accuracy, perturbed, reservoirs
from lit_vir.robustness.report import perturbation_figure
from lit_vir.training.checkpoints import load_classifier

EXAMPLES = """\
examples:
  lit-vir perturb --ckpt_path logs/vir-mnist/version_0/checkpoints/last.ckpt
  lit-vir perturb --ckpt_path RUN_A/checkpoints/last.ckpt --ckpt_path RUN_B/checkpoints/last.ckpt \\
      --kinds noise --noise 0 0.001 0.01 0.1            # ViR against ViT on one noise axis
  lit-vir perturb --ckpt_path X.ckpt -c configs/data/fashion_mnist.yaml --limit_batches 20
  lit-vir perturb --ckpt_path X.ckpt --print_config > perturb.yaml     # then: lit-vir perturb -c perturb.yaml

The test data come from the run's config.yaml (next to checkpoints/) unless a data piece is given (-c, with
--data... overrides as for `lit-vir fit`).
Writes perturbation.csv, perturbation.json and perturbation.png to --output.
"""

DEFAULT_LEVELS = {
    "spectral_radius": [0.8, 0.9, 1.0, 1.1, 1.2],
    "noise": [0.0, 0.001, 0.003, 0.01, 0.03, 0.1],
    "input_sparsity": [0.01, 0.02, 0.05, 0.1, 0.2],
    "reservoir_seed": [1.0, 2.0, 3.0],
}


def parser() -> jsonargparse.ArgumentParser:
    parse = checkpoint_tool_parser("lit-vir perturb", __doc__, EXAMPLES, data="the test data")
    parse.add_argument("--ckpt_path", action="append", required=True, help="a checkpoint (repeat for several)")
    parse.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="perturbations to apply")
    for kind, levels in DEFAULT_LEVELS.items():
        extra = " (the trained seed is added)" if kind == "reservoir_seed" else ""
        parse.add_argument(f"--{kind}", nargs="+", type=float, default=levels, help=f"levels{extra}")
    parse.add_argument("--seed", type=int, default=0, help="seed of the noise draws")
    parse.add_argument("--limit_batches", type=int | None, default=None, help="test on the first N batches only")
    parse.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="where to evaluate")
    parse.add_argument("--output", default="perturbation", help="folder for the result files")
    return parse


@user_errors()  # lit-vir's one-line messages and exit codes for what a user can fix
def main(argv: list[str]) -> None:
    parse = parser()
    arguments = parse.parse_args(argv)
    if arguments.limit_batches is not None:
        check_range("perturb", "limit_batches", arguments.limit_batches, low=1, hint="Test on at least 1 batch.")
    checkpoints = [Path(path) for path in arguments.ckpt_path]
    batches = test_batches(test_datamodule(parse, arguments, checkpoints[0]), arguments.limit_batches)
    rows = []
    console = Console()
    with Progress(console=console) as progress:
        for checkpoint in checkpoints:
            backbone = load_classifier(checkpoint).backbone.eval()
            name = checkpoint_label(checkpoint, backbone)
            kinds = [kind for kind in arguments.kinds if kind not in RESERVOIR_KINDS or reservoirs(backbone)]
            plans = [(kind, level) for kind in kinds for level in _levels(arguments, kind, backbone)]
            task = progress.add_task(name, total=len(plans))
            for kind, level in plans:
                model = perturbed(backbone, Perturbation(kind, level), seed=arguments.seed)
                rows.append(
                    {
                        "model": name,
                        "kind": kind,
                        "level": level,
                        "accuracy": accuracy(model, batches, arguments.device),
                    }
                )
                progress.advance(task)
    write_results(rows, Path(arguments.output), console)


def _levels(arguments: jsonargparse.Namespace, kind: str, backbone: torch.nn.Module) -> list[float]:
    levels = list(getattr(arguments, kind))
    if kind == "reservoir_seed":
        levels = [float(reservoirs(backbone)[0].seed), *levels]  # the trained reservoir first
    return levels


def write_results(rows: list[dict], folder: Path, console: Console) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "perturbation.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=["model", "kind", "level", "accuracy"])
        writer.writeheader()
        writer.writerows(rows)
    (folder / "perturbation.json").write_text(json.dumps(rows, indent=2))
    perturbation_figure(rows).savefig(folder / "perturbation.png", dpi=120)
    models = list(dict.fromkeys(row["model"] for row in rows))
    table = Table(title="Accuracy under perturbation")
    table.add_column("perturbation")
    table.add_column("level", justify="right")
    for model in models:
        table.add_column(model, justify="right")
    for kind, level in dict.fromkeys((row["kind"], row["level"]) for row in rows):
        found = {row["model"]: row["accuracy"] for row in rows if (row["kind"], row["level"]) == (kind, level)}
        table.add_row(kind, f"{level:g}", *[f"{100 * found[m]:.2f}" if m in found else "—" for m in models])
    console.print(table)
    console.print(f"wrote {folder}/perturbation.csv, perturbation.json, perturbation.png")
