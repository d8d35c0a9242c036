"""`lit-vir quantize`: MPTQ-ViT post-training quantisation of a trained checkpoint, tested on the test split.

MPTQ-ViT (Tai & Wu 2024) with no retraining: a few hundred training images calibrate SQ-b (SmoothQuant with a
bias shift, folded into LayerNorm → Linear pairs), the per-tensor activation grids, OPT-m (two scales for
post-GELU values) and the softmax output's two-scale grid; then every matrix product runs fully quantised at
W_b A_b, or at per-unit widths found by the greedy mixed-precision search for budgets of the average weight
width W̄ and the average activation width Ā. Rows: FP32; then for MPTQ-ViT and its ablations (SQ-b off,
OPT-m off; optionally a log2 or uniform softmax quantiser) uniform W8A8, W6A6, W4A4 and mixed precision at
W̄, Ā ≤ 5 and ≤ 4, each with test accuracy, both averages and the model's size in bits.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import jsonargparse
import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from torch import nn

from lit_vir.analysis.uncertainty import accuracy_interval, paired_difference
from lit_vir.checks import ConfigError, check_range
from lit_vir.commands.common import test_batches, test_datamodule
from lit_vir.config import add_flag, checkpoint_tool_parser, user_errors
from lit_vir.data.base import ImageDataModule, TransformedSubset
from lit_vir.quantization import (
    BIT_CHOICES,
    EDGE_BITS,
    Budget,
    QuantAttention,
    Recipe,
    average_bits,
    calibrated_copy,
    coverage,
    current_precision,
    greedy_search,
    model_size,
    quantized_layers,
    set_precision,
    smoothing_pairs,
    unit_sizes,
)
from lit_vir.quantization.size import FLOAT_BITS
from lit_vir.quantization.softmax import softmax_statistics
from lit_vir.robustness.perturb import correct_images
from lit_vir.training.provenance import environment

__all__ = ["main"]

QUANTISED = f"""\
what is quantised (fake quantisation: the float model computes what the integer model would):
  every matrix product, both inputs — weights per output channel (symmetric), activations per tensor:
  - every Linear: qkv, proj, fc1, fc2 (input via OPT-m's two scales after GELU), ViR's readouts (one grid
    per concatenated source: x, h, o, x², h², o²) and residual MLPs;
  - both attention products of ViT's and ReViT's attention: q·kᵀ (q and k symmetric) and softmax·V (the
    softmax output with TSPTQ-ViT's two-scale grid, or log2 / uniform in those variants; v symmetric);
    other backbones' attentions (ViT-Slim, MobileViT, ViTAE) keep float products;
  - the patch embedding (ViT's stride-P convolution; ViR's fixed random projection) and the classifier
    head: fixed at W{EDGE_BITS}A{EDGE_BITS} and outside W_b A_b and the search, unless --search_edges.
  float: LayerNorms (vectors), ViR's reservoirs W and V (fixed, drawn from the seed, not stored),
  convolutions other than ViT's patch embedding, elementwise operations (GELU, softmax, tanh, residuals).
  W bits / A bits: the averages W̄ = Σ n_l·w_l / Σ n_l over the weights, Ā = Σ n_s·a_s / Σ n_s over the
  numbers entering products per image, both over the layers a width applies to (not the fixed edges).
  Size: b bits per quantised weight + a 32-bit scale per output channel + 32-bit bias; 32 bits per stored
  quantiser number (scale, zero point, m); 32 bits per other parameter; reservoir buffers not counted.
"""

EXAMPLES = f"""\
{QUANTISED}
examples:
  lit-vir quantize --ckpt_path logs/vir-mnist/version_0/checkpoints/last.ckpt
  lit-vir quantize --ckpt_path logs/visiontransformer-cifar10/version_0/checkpoints/last.ckpt --calibration 1024
  lit-vir quantize --ckpt_path X.ckpt --bits 8 4 --targets W4A6 --variants mptq      # fewer rows
  lit-vir quantize --ckpt_path X.ckpt --variants mptq log2_softmax uniform_softmax --targets   # no search
  lit-vir quantize --ckpt_path X.ckpt --calibration 64 --limit_batches 5          # a quick look
  lit-vir quantize --ckpt_path X.ckpt -c configs/data/fashion_mnist.yaml

Calibration images are drawn (--seed) from the training split, not its validation part, with the evaluation
transform; the mixed-precision search measures its loss on them too (or on the first --search_images). The
data come from the run's config.yaml (next to checkpoints/) unless a data piece is given (-c, with --data...
overrides as for `lit-vir fit`). Writes
quantization.json (every row with its per-unit bit widths, the search paths, what was quantised, commit and
machine), quantization.csv and quantization.md (the table) to --output.
"""

VARIANTS = {
    "mptq": ("MPTQ-ViT", Recipe()),
    "no_sq_b": ("SQ-b off", Recipe(sq_b=False)),
    "no_opt_m": ("OPT-m off", Recipe(opt_m=False)),
    "log2_softmax": ("log2 softmax", Recipe(softmax="log2")),
    "uniform_softmax": ("uniform softmax", Recipe(softmax="uniform")),
}
DEFAULT_VARIANTS = ["mptq", "no_sq_b", "no_opt_m"]
CSV_FIELDS = [
    "precision",
    "method",
    "sq_b",
    "opt_m",
    "softmax",
    "weight_bits",
    "activation_bits",
    "accuracy",
    "accuracy_interval",
    "vs_fp32",
    "size_bits",
    "size_mb",
]


def parser() -> jsonargparse.ArgumentParser:
    parse = checkpoint_tool_parser("lit-vir quantize", __doc__, EXAMPLES, data="the data")
    parse.add_argument("--ckpt_path", required=True, help="checkpoint of a ViR, ViT or other lit-vir run")
    parse.add_argument("--calibration", type=int, default=256, help="training images to calibrate on")
    parse.add_argument("--bits", type=int, nargs="+", default=[8, 6, 4], help="uniform W_b A_b settings")
    parse.add_argument(
        "--targets",
        type=str,
        nargs="*",
        default=["5", "4"],
        help="mixed-precision budgets: 5 (W̄ ≤ 5 and Ā ≤ 5) or W5A6 (W̄ ≤ 5, Ā ≤ 6); none: no search",
    )
    parse.add_argument(
        "--choices", type=int, nargs="+", default=list(BIT_CHOICES), help="bit widths a unit may take in the search"
    )
    parse.add_argument(
        "--search_images",
        type=int | None,
        default=None,
        help="measure the search's loss on the first N calibration images only (default: all of them)",
    )
    add_flag(
        parse,
        "--lazy_search",
        "re-score only the leading candidates each step (Minoux's accelerated greedy): about U + 2·steps "
        "calibration passes instead of U·steps for U units (default: the exact greedy)",
    )
    parse.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=DEFAULT_VARIANTS, help="MPTQ-ViT and its ablations"
    )
    add_flag(
        parse,
        "--search_edges",
        f"quantise the patch embedding and head at W_b A_b and search them too (default: fixed W{EDGE_BITS}A"
        f"{EDGE_BITS})",
    )
    parse.add_argument("--alpha", type=float, default=0.5, help="SQ-b's SmoothQuant migration strength α")
    parse.add_argument("--shift", choices=["midrange", "mean"], default="midrange", help="SQ-b's channel centre μ")
    parse.add_argument("--limit_batches", type=int | None, default=None, help="test on the first N batches only")
    parse.add_argument("--batch_size", type=int, default=64, help="batch size of calibration and search passes")
    parse.add_argument("--seed", type=int, default=0, help="seed of the calibration images' draw")
    parse.add_argument("--device", type=str, default="cuda" if torch.cuda.is_available() else "cpu")
    parse.add_argument("--output", type=str, default="quantization", help="folder for the result files")
    return parse


def checked(arguments: jsonargparse.Namespace) -> list[Budget]:
    """The parsed budgets, after every option is checked against its range (a ConfigError names the first
    that is not), before a checkpoint or an image is read."""
    hint = "Give a positive count."
    for field in ("calibration", "batch_size", "search_images", "limit_batches"):
        if arguments[field] is not None:
            check_range("quantize", field, arguments[field], low=1, hint=hint)
    for field in ("bits", "choices"):
        for bits in arguments[field]:
            check_range("quantize", field, bits, low=2, high=16, hint="Bit widths run from 2 to 16.")
    check_range("quantize", "alpha", arguments.alpha, low=0, high=1, hint="0: all range stays in the activations.")
    try:
        targets = [Budget.parse(text) for text in arguments.targets]
    except ValueError as error:
        raise ConfigError(f"quantize: targets: {error}") from None
    lowest = min(arguments.choices)
    if any(min(target.weight_bits, target.activation_bits) < lowest for target in targets):
        raise ConfigError(
            f"quantize: targets {[target.label for target in targets]} go below the lowest of choices "
            f"{arguments.choices}; raise the targets or add a lower choice"
        )
    return targets


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


def load_data(parse: jsonargparse.ArgumentParser, arguments: jsonargparse.Namespace) -> tuple[torch.Tensor, list]:
    """Calibration images and the test batches, from -c data pieces or the checkpoint's run."""
    datamodule = test_datamodule(parse, arguments, Path(arguments.ckpt_path))
    datamodule.prepare_data()
    images = calibration_images(datamodule, arguments.calibration, arguments.seed)
    return images, test_batches(datamodule, arguments.limit_batches)


def softmax_rows(model: nn.Module) -> dict | None:
    """The softmax quantisers' effect on their calibration rows, over every quantised attention: the mean
    fraction of weights zeroed, the smallest and the mean row mass kept (None: no quantised softmax)."""
    found = [
        softmax_statistics(module.av.left)
        for module in model.modules()
        if isinstance(module, QuantAttention) and module.av.activation_bits is not None
    ]
    if not found:
        return None
    return {
        "zeroed": sum(entry.zeroed for entry in found) / len(found),
        "min_row_mass": min(entry.min_row_mass for entry in found),
        "mean_row_mass": sum(entry.mean_row_mass for entry in found) / len(found),
    }


def evaluate(
    precision: str, method: str, recipe: Recipe | None, model: nn.Module, batches: list, device: str, **extra
) -> dict:
    """One result row: test accuracy, average widths and size of `model` at its current precision
    (`recipe` None: FP32)."""
    size = model_size(model)
    row = {
        "precision": precision,
        "method": method,
        "sq_b": recipe is not None and recipe.sq_b,
        "opt_m": recipe is not None and recipe.opt_m,
        "softmax": recipe.softmax if recipe else None,
        "weight_bits": FLOAT_BITS,
        "activation_bits": FLOAT_BITS,
        "outcomes": correct_images(model, batches, device),
        "size_bits": size.bits,
        "size_mb": size.megabytes,
        **extra,
    }
    row["accuracy"] = float(row["outcomes"].mean())
    interval = accuracy_interval([row["outcomes"]])
    row["accuracy_interval"] = [interval.low, interval.high]
    if recipe is not None:
        weights, activations = unit_sizes(model)
        now = current_precision(model)
        row["weight_bits"] = round(average_bits(now.weights, weights), 3)
        row["activation_bits"] = round(average_bits(now.activations, activations), 3)
        layers = quantized_layers(model).items()
        row["fixed_bits"] = {name: layer.weight_bits for name, layer in layers if layer.fixed_bits is not None}
        row["unit_bits"] = asdict(now)
        row["softmax_rows"] = softmax_rows(model)
    return row


@user_errors()  # lit-vir's one-line messages and exit codes for what a user can fix
def main(argv: list[str]) -> None:
    from lit_vir.training.checkpoints import load_classifier

    parse = parser()
    arguments = parse.parse_args(argv)
    targets = checked(arguments)
    console = Console()
    backbone = load_classifier(arguments.ckpt_path).backbone.eval().to(arguments.device)
    images, batches = load_data(parse, arguments)
    images = images.to(arguments.device)
    recipes = {name: VARIANTS[name] for name in arguments.variants}
    rows, paths, covered = [], {}, {}
    with Progress(console=console) as progress:
        task = progress.add_task(
            f"{type(backbone).__name__}: FP32", total=1 + len(recipes) * (len(arguments.bits) + len(targets))
        )
        rows.append(evaluate("FP32", "float", None, backbone, batches, arguments.device))
        progress.advance(task)
        for name, (method, base) in recipes.items():
            recipe = Recipe(
                base.sq_b, base.opt_m, base.softmax, arguments.search_edges, arguments.alpha, arguments.shift
            )
            progress.update(task, description=f"{method}: calibrating")
            model = calibrated_copy(backbone, images, recipe, arguments.batch_size)
            if not quantized_layers(model):
                raise SystemExit(f"lit-vir quantize: {type(backbone).__name__} has no Linear layer to quantise")
            covered[name] = asdict(coverage(model))
            for bits in arguments.bits:
                progress.update(task, description=f"{method}: W{bits}A{bits}")
                set_precision(model, bits)
                rows.append(evaluate(f"W{bits}A{bits}", method, recipe, model, batches, arguments.device))
                progress.advance(task)
            if not targets:
                continue
            progress.update(task, description=f"{method}: mixed-precision search")
            search = greedy_search(
                model,
                images[: arguments.search_images],
                targets,
                arguments.choices,
                arguments.batch_size,
                arguments.lazy_search,
            )
            paths[name] = {"evaluations": search.evaluations, "steps": [asdict(step) for step in search.steps]}
            for target in targets:
                set_precision(model, search.bits[target])
                budget_bits = {"weight_bits": target.weight_bits, "activation_bits": target.activation_bits}
                label = f"MP-{target.label}"
                rows.append(evaluate(label, method, recipe, model, batches, arguments.device, budget=budget_bits))
                progress.advance(task)
    comparisons = paired_rows(rows)
    outcomes = {f"{row['method']}/{row['precision']}": row.pop("outcomes") for row in rows}
    report = {
        "checkpoint": str(arguments.ckpt_path),
        "backbone": type(backbone).__name__,
        "calibration_images": len(images),
        "test_images": sum(len(labels) for _, labels in batches),
        "bit_choices": sorted(set(arguments.choices), reverse=True),
        "search": {
            "greedy": "lazy" if arguments.lazy_search else "exact",
            "images": len(images[: arguments.search_images]),
        },
        "edges": "searched" if arguments.search_edges else f"fixed W{EDGE_BITS}A{EDGE_BITS}",
        "quantised": QUANTISED,
        "sq_b_pairs": [pair.name for pair in smoothing_pairs(backbone)],
        "coverage": covered,
        "command": ["lit-vir", "quantize", *argv],
        "environment": environment(),
        "rows": rows,
        "comparisons": comparisons,
        "search_paths": paths,
    }
    write_results(report, Path(arguments.output), console)
    np.savez_compressed(Path(arguments.output) / "quantization_outcomes.npz", **outcomes)


def paired_rows(rows: list[dict]) -> list[dict]:
    """Every quantised row against FP32, and MPTQ-ViT against each ablation at the same precision, on the same test
    images: the difference, its 95% interval (bootstrap over images) and McNemar's exact p. Each row also gets its
    difference and p against FP32."""
    fp32 = rows[0]
    by_key = {(row["method"], row["precision"]): row for row in rows}
    found = []
    for row in rows[1:]:
        found.append(compared(row, fp32, "FP32"))
        versus = found[-1]
        row["vs_fp32"] = {key: versus[key] for key in ("difference", "low", "high", "p")}
    mptq = VARIANTS["mptq"][0]
    for (method, precision), row in by_key.items():
        if method not in (mptq, "float") and (mptq, precision) in by_key:
            found.append(compared(by_key[mptq, precision], row, f"{method} {precision}"))
    return found


def compared(row: dict, other: dict, name: str) -> dict:
    result = paired_difference([row["outcomes"]], [other["outcomes"]])
    return {
        "row": f"{row['method']} {row['precision']}",
        "against": name,
        "difference": result.difference,
        "low": result.low,
        "high": result.high,
        "p": result.p,
        "test": result.test,
    }


def table_cells(entry: dict, baseline: float) -> list[str]:
    """One row's cells, in the order of `TABLE_COLUMNS`."""
    mark = {True: "✓", False: "—"}
    low, high = entry["accuracy_interval"]
    versus = entry.get("vs_fp32")
    return [
        entry["precision"],
        entry["method"],
        mark[entry["sq_b"]],
        mark[entry["opt_m"]],
        entry["softmax"] or "float",
        f"{entry['weight_bits']:g}",
        f"{entry['activation_bits']:g}",
        f"{100 * entry['accuracy']:.2f} [{100 * low:.2f}, {100 * high:.2f}]",
        f"{100 * (entry['accuracy'] - baseline):+.2f}"
        + (f" [{100 * versus['low']:+.2f}, {100 * versus['high']:+.2f}]" if versus else ""),
        "–" if versus is None else f"{versus['p']:.3g}",
        f"{entry['size_bits']:,}",
        f"{entry['size_mb']:.4f}",
    ]


TABLE_COLUMNS = [
    *("precision", "method", "SQ-b", "OPT-m", "softmax", "W̄ bits", "Ā bits"),
    *("acc % [95% CI]", "Δ vs FP32 [95% CI]", "p (McNemar)", "size (bits)", "MB"),
]


def coverage_line(report: dict) -> str:
    """What the first variant's copy quantised, in one sentence."""
    first = next(iter(report["coverage"].values()), None)
    if first is None:
        return "nothing quantised"
    floating = ", ".join(first["float_attention_products"]) or "none"
    return (
        f"quantised: {len(first['layers'])} weighted layers ({', '.join(first['fixed_edges']) or 'no'} edges "
        f"{report['edges']}), {len(first['attention_products'])} attentions with both products quantised "
        f"(left float: {floating}), {len(first['opt_m'])} post-GELU inputs with OPT-m, {len(report['sq_b_pairs'])} "
        f"SQ-b pairs; float matrices: {', '.join(first['float_layers']) or 'none'}"
    )


def markdown(report: dict) -> str:
    """The rows as a Markdown table, headed by what was measured, where and how."""
    rows = report["rows"]
    setting = report["environment"]
    lines = [
        f"### MPTQ-ViT on {report['backbone']} (`{report['checkpoint']}`)",
        "",
        f"{report['calibration_images']} calibration images, {report['test_images']} test images; commit "
        f"`{setting['lit_vir_commit']}`, {setting['cpu']}"
        + (f", {setting['cuda_device']}" if setting["cuda_device"] else "")
        + f"; `{' '.join(report['command'])}`.",
        "",
        coverage_line(report) + ".",
        "",
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(table_cells(entry, rows[0]["accuracy"])) + " |" for entry in rows]
    ablations = [entry for entry in report["comparisons"] if entry["against"] != "FP32"]
    if ablations:
        lines += ["", "MPTQ-ViT against each ablation at the same precision, on the same images:", ""]
        lines += ["| MPTQ-ViT row | against | Δ points [95% CI] | p (McNemar) |", "|---|---|---|---|"]
        lines += [
            f"| {entry['row']} | {entry['against']} | {100 * entry['difference']:+.2f} "
            f"[{100 * entry['low']:+.2f}, {100 * entry['high']:+.2f}] | {entry['p']:.3g} |"
            for entry in ablations
        ]
    lines += ["", "Intervals: percentile bootstrap over the test images; p: McNemar's exact test on the same images."]
    return "\n".join(lines) + "\n"


def write_results(report: dict, folder: Path, console: Console) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "quantization.json").write_text(json.dumps(report, indent=2))
    (folder / "quantization.md").write_text(markdown(report))
    with open(folder / "quantization.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(report["rows"])
    rows = report["rows"]
    table = Table(title=f"MPTQ-ViT on {report['backbone']} ({report['test_images']} test images)")
    for column in TABLE_COLUMNS:
        table.add_column(column, justify="left" if column in ("precision", "method", "softmax") else "right")
    for entry in rows:
        table.add_row(*table_cells(entry, rows[0]["accuracy"]))
    console.print(table)
    console.print(coverage_line(report))
    console.print(f"wrote {folder}/quantization.json, quantization.csv, quantization.md")
