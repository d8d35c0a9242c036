"""`lit-vir quantize`: MPTQ-ViT post-training quantisation of a trained checkpoint, tested on the test split.

MPTQ-ViT (Tai & Wu 2024) with no retraining: a few hundred training images calibrate SQ-b (SmoothQuant with a
bias shift, folded into LayerNorm → Linear pairs), the per-tensor activation grids and OPT-m (two scales for
post-GELU values); then every Linear runs at W_b A_b, or at per-layer widths found by the greedy
mixed-precision search for an average weight bit width. Rows: FP32; then for MPTQ-ViT and its ablations
(SQ-b off, OPT-m off) uniform W8A8, W6A6, W4A4 and mixed precision at average 5 and 4 bits, each with
test accuracy and the model's size in bits (`lit_vir.quantization.size` says how it is counted).

ViT (and ReViT) and ViR checkpoints get every part: for ViR the trainable readouts, residual MLPs and head
(the reservoirs and the fixed patch embedding stay float). Other backbones are quantised where they match:
every Linear is quantised, SQ-b only where a LayerNorm → Linear pair is known to be foldable, OPT-m where
a GELU feeds a Linear, softmax where ViT's attention module runs; the printed coverage says what was.
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import asdict
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from torch import nn

from lit_vir.commands.common import command_parser, datamodule_from_configs, run_config, test_batches
from lit_vir.data.base import ImageDataModule, TransformedSubset
from lit_vir.quantization import (
    BIT_CHOICES,
    Recipe,
    average_bits,
    calibrated_copy,
    coverage,
    greedy_search,
    layer_sizes,
    model_size,
    quantized_layers,
    set_precision,
    smoothing_pairs,
)
from lit_vir.quantization.size import FLOAT_BITS
from lit_vir.robustness.perturb import accuracy

__all__ = ["main"]

EXAMPLES = """\
examples:
  lit-vir quantize --ckpt_path logs/vir-mnist/version_0/checkpoints/last.ckpt
  lit-vir quantize --ckpt_path logs/visiontransformer-cifar10/version_0/checkpoints/last.ckpt --calibration 1024
  lit-vir quantize --ckpt_path X.ckpt --bits 8 4 --targets 4 --variants mptq      # fewer rows
  lit-vir quantize --ckpt_path X.ckpt --calibration 64 --limit_batches 5          # a quick look
  lit-vir quantize --ckpt_path X.ckpt -c configs/data/fashion_mnist.yaml

Calibration images are drawn (--seed) from the training split, not its validation part, with the evaluation
transform. The data come from the run's config.yaml (next to checkpoints/) unless -c configs are given.
Writes quantization.json (every row with its per-layer bit widths, the search paths, what was quantised)
and quantization.csv to --output.
"""

VARIANTS = {
    "mptq": ("MPTQ-ViT", Recipe()),
    "no_sq_b": ("SQ-b off", Recipe(sq_b=False)),
    "no_opt_m": ("OPT-m off", Recipe(opt_m=False)),
}
SIZE_COUNTING = (
    "quantised Linear: b bits per weight + one 32-bit scale per output channel + 32-bit bias; each activation "
    "quantiser: 32 bits per stored number (scale, zero point, OPT-m's m); every other parameter: 32 bits; "
    "buffers (ViR's reservoirs, drawn from the seed) not counted; MB = 10^6 bytes"
)
CSV_FIELDS = [
    "precision",
    "method",
    "sq_b",
    "opt_m",
    "weight_bits",
    "activation_bits",
    "accuracy",
    "size_bits",
    "size_mb",
]


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive count")
    return value


def bit_width(text: str) -> int:
    value = int(text)
    if not 2 <= value <= 16:
        raise argparse.ArgumentTypeError(f"{value} bits is outside [2, 16]")
    return value


def strength(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"α = {value} is outside [0, 1] (0: all range stays in the activations)")
    return value


def parser() -> argparse.ArgumentParser:
    parse = command_parser("lit-vir quantize", __doc__, EXAMPLES)
    parse.add_argument("--ckpt_path", required=True, help="checkpoint of a ViR, ViT or other lit-vir run")
    parse.add_argument("-c", "--config", action="append", default=[], help="config giving the data (repeatable)")
    parse.add_argument(
        "--calibration", type=positive, default=256, help="training images to calibrate on (%(default)s)"
    )
    parse.add_argument(
        "--bits", type=bit_width, nargs="+", default=[8, 6, 4], help="uniform W_b A_b settings (%(default)s)"
    )
    parse.add_argument(
        "--targets",
        type=float,
        nargs="+",
        default=[5.0, 4.0],
        help="average weight bit widths of the mixed-precision rows (%(default)s)",
    )
    parse.add_argument(
        "--choices",
        type=bit_width,
        nargs="+",
        default=list(BIT_CHOICES),
        help="bit widths a layer may take in the search (%(default)s)",
    )
    parse.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="MPTQ-ViT and its ablations (all)"
    )
    parse.add_argument(
        "--alpha", type=strength, default=0.5, help="SQ-b's SmoothQuant migration strength α (%(default)s)"
    )
    parse.add_argument(
        "--shift", choices=["midrange", "mean"], default="midrange", help="SQ-b's channel centre μ (%(default)s)"
    )
    parse.add_argument("--limit_batches", type=positive, default=None, help="test on the first N batches only")
    parse.add_argument(
        "--batch_size", type=positive, default=64, help="batch size of calibration and search passes (%(default)s)"
    )
    parse.add_argument("--seed", type=int, default=0, help="seed of the calibration images' draw")
    parse.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="(%(default)s)")
    parse.add_argument("--output", default="quantization", help="folder for the result files")
    return parse


def calibration_images(datamodule: ImageDataModule, count: int, seed: int) -> torch.Tensor:
    """`count` images of the training split (validation images excluded), drawn with `seed`, evaluation
    transform (no augmentation): (N, C, H, W)."""
    full = datamodule.load_split(train=True)
    train_indices, _ = datamodule.split_indices(len(full))
    if count > len(train_indices):
        raise SystemExit(f"lit-vir quantize: --calibration {count} exceeds the {len(train_indices)} training images")
    order = torch.randperm(len(train_indices), generator=torch.Generator().manual_seed(seed))[:count]
    chosen = TransformedSubset(full, [train_indices[int(index)] for index in order], datamodule.eval_transform())
    return torch.stack([chosen[index][0] for index in range(count)])


def load_data(arguments: argparse.Namespace) -> tuple[torch.Tensor, list]:
    """Calibration images and the test batches, from -c configs or the checkpoint's run."""
    datamodule = datamodule_from_configs(arguments.config or [run_config(Path(arguments.ckpt_path))])
    datamodule.prepare_data()
    images = calibration_images(datamodule, arguments.calibration, arguments.seed)
    return images, test_batches(datamodule, arguments.limit_batches)


def evaluate(precision: str, method: str, recipe: Recipe | None, model: nn.Module, batches: list, device: str) -> dict:
    """One result row: test accuracy and size of `model` at its current precision (`recipe` None: FP32)."""
    bits = {name: layer.bits for name, layer in quantized_layers(model).items()}
    widths = set(bits.values())
    size = model_size(model)
    return {
        "precision": precision,
        "method": method,
        "sq_b": recipe is not None and recipe.sq_b,
        "opt_m": recipe is not None and recipe.opt_m,
        "weight_bits": round(average_bits(bits, layer_sizes(model)), 3) if recipe else FLOAT_BITS,
        "activation_bits": (widths.pop() if len(widths) == 1 else None) if recipe else FLOAT_BITS,  # None: per layer
        "accuracy": accuracy(model, batches, device),
        "size_bits": size.bits,
        "size_mb": size.megabytes,
        "layer_bits": bits if recipe else None,
    }


def main(argv: list[str]) -> None:
    from lit_vir.training.checkpoints import load_classifier

    arguments = parser().parse_args(argv)
    if min(arguments.targets) < min(arguments.choices):
        raise SystemExit(
            f"lit-vir quantize: --targets {arguments.targets} go below the lowest of --choices {arguments.choices}"
        )
    console = Console()
    backbone = load_classifier(arguments.ckpt_path).backbone.eval().to(arguments.device)
    images, batches = load_data(arguments)
    images = images.to(arguments.device)
    recipes = {name: VARIANTS[name] for name in arguments.variants}
    rows, paths, covered = [], {}, None
    with Progress(console=console) as progress:
        task = progress.add_task(
            f"{type(backbone).__name__}: FP32", total=1 + len(recipes) * (len(arguments.bits) + len(arguments.targets))
        )
        rows.append(evaluate("FP32", "float", None, backbone, batches, arguments.device))
        progress.advance(task)
        for name, (method, base) in recipes.items():
            recipe = Recipe(base.sq_b, base.opt_m, arguments.alpha, arguments.shift)
            progress.update(task, description=f"{method}: calibrating")
            model = calibrated_copy(backbone, images, recipe, arguments.batch_size)
            if not quantized_layers(model):
                raise SystemExit(f"lit-vir quantize: {type(backbone).__name__} has no Linear layer to quantise")
            covered = covered or coverage(model)
            for bits in arguments.bits:
                progress.update(task, description=f"{method}: W{bits}A{bits}")
                set_precision(model, bits)
                rows.append(evaluate(f"W{bits}A{bits}", method, recipe, model, batches, arguments.device))
                progress.advance(task)
            progress.update(task, description=f"{method}: mixed-precision search")
            search = greedy_search(model, images, arguments.targets, arguments.choices, arguments.batch_size)
            paths[name] = [asdict(step) for step in search.steps]
            for target in arguments.targets:
                set_precision(model, search.bits[target])
                rows.append(evaluate(f"MP{target:g}", method, recipe, model, batches, arguments.device))
                progress.advance(task)
    report = {
        "checkpoint": str(arguments.ckpt_path),
        "backbone": type(backbone).__name__,
        "calibration_images": len(images),
        "test_images": sum(len(labels) for _, labels in batches),
        "bit_choices": sorted(set(arguments.choices), reverse=True),
        "size_counting": SIZE_COUNTING,
        "coverage": {"sq_b": [pair.name for pair in smoothing_pairs(backbone)], **asdict(covered)},
        "rows": rows,
        "search_paths": paths,
    }
    write_results(report, Path(arguments.output), console)


def write_results(report: dict, folder: Path, console: Console) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "quantization.json").write_text(json.dumps(report, indent=2))
    with open(folder / "quantization.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(report["rows"])
    rows = report["rows"]
    baseline = rows[0]["accuracy"]
    table = Table(title=f"MPTQ-ViT on {report['backbone']} ({report['test_images']} test images)")
    for column in ("precision", "method", "SQ-b", "OPT-m", "W bits", "A bits", "acc %", "Δ acc", "size (bits)", "MB"):
        table.add_column(column, justify="left" if column in ("precision", "method") else "right")
    for entry in rows:
        activation = "per layer" if entry["activation_bits"] is None else str(entry["activation_bits"])
        table.add_row(
            entry["precision"],
            entry["method"],
            "✓" if entry["sq_b"] else "—",
            "✓" if entry["opt_m"] else "—",
            f"{entry['weight_bits']:g}",
            activation,
            f"{100 * entry['accuracy']:.2f}",
            f"{100 * (entry['accuracy'] - baseline):+.2f}",
            f"{entry['size_bits']:,}",
            f"{entry['size_mb']:.4f}",
        )
    console.print(table)
    covered = report["coverage"]
    console.print(
        f"quantised: {len(covered['linears'])} Linear layers, {len(covered['softmax'])} softmax outputs, "
        f"{len(covered['opt_m'])} post-GELU inputs with OPT-m, {len(covered['sq_b'])} SQ-b pairs; "
        f"float: {', '.join(covered['float_layers']) or 'nothing'}"
    )
    console.print(f"wrote {folder}/quantization.json, quantization.csv")
