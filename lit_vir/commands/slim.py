"""`lit-vir slim`: ViT-Slim's slimming step — from a search checkpoint to smaller ViTs ready to fine-tune.

For each budget the command ranks the search run's masks, builds the physically smaller `SlimViT`
(`lit_vir.models.vit_slim.slim`), checks that its logits are the masked model's, measures it and writes:

    slim-b0.50.ckpt   a weights-only checkpoint of an `ImageClassifier` around the slim model, its structure
                      in the hyperparameters: `load_classifier` loads it; `lit-vir test --ckpt_path` tests it
    slim-b0.50.yaml   the config piece for fine-tuning: the `SlimViT` with its per-block widths, plus a
                      `WarmStart` callback that starts `fit` from the checkpoint's weights
    slim.json         the measurements of every budget (also printed as a table)

Fine-tuning is a new run (`lit-vir fit -c ... -c slim-b0.50.yaml`), not a resumed one: `fit --ckpt_path`
restores a run's optimiser and loop state, which a freshly slimmed network does not have. The piece names
the weights file instead, so the fine-tuned checkpoints record only architecture and weights and load on
their own, weights-only.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import jsonargparse
import lightning
import torch
import yaml
from rich import box
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import lit_vir.training.slim  # noqa: F401  (load_classifier must find SlimSearch, the search checkpoints' class)
from lit_vir.checks import check_range
from lit_vir.commands.common import test_batches, test_datamodule
from lit_vir.config import add_flag, tool_parser, user_errors
from lit_vir.models.vit import VisionTransformer
from lit_vir.models.vit_slim import (
    ORIGINAL,
    SearchableViT,
    SlimViT,
    apply_keep_masks,
    build_slim,
    keep_masks,
    vit_hyperparameters,
)
from lit_vir.robustness.perturb import accuracy
from lit_vir.training.checkpoints import AtomicCheckpointIO, load_classifier, read_checkpoint

__all__ = ["count_flops", "main", "measure_throughput"]

EXAMPLES = """\
examples:
  lit-vir slim logs/searchablevit-cifar10/version_0/checkpoints/last.ckpt --budget 0.5 0.6 0.7 0.8
  lit-vir slim search.ckpt --budget 0.7 --token-budget 1.0       # slim heads and MLPs, keep every token
  lit-vir slim search.ckpt --budget 0.5 --out slim/ --batch-size 256 --repeats 30
  lit-vir slim search.ckpt --budget 0.5 --report-only --json -  # measure only, JSON on stdout
then fine-tune (a new run, started from the slim weights by the written piece):
  lit-vir fit -c configs/vir.yaml -c configs/data/cifar10.yaml -c slim/slim-b0.50.yaml
or test the slim model as it is:
  lit-vir test -c configs/vir.yaml -c configs/data/cifar10.yaml -c slim/slim-b0.50.yaml --ckpt_path slim/slim-b0.50.ckpt
"""


def count_flops(model: nn.Module, images: torch.Tensor) -> int:
    """FLOPs of one forward pass per image, counted by `torch.utils.flop_counter.FlopCounterMode` (a
    multiply-add is 2). Attention runs on PyTorch's math kernel here so its matrix products are counted."""
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(images)
    return counter.get_total_flops() // images.shape[0]


def measure_throughput(
    models: Sequence[nn.Module], images: torch.Tensor, warmup: int = 3, repeats: int = 10
) -> list[float]:
    """Images per second of each model: `warmup` untimed passes each, then `repeats` rounds that time one
    forward pass of every model in turn (a change in the machine's load hits them alike); the median counts."""

    def synchronize() -> None:
        if images.device.type == "cuda":
            torch.cuda.synchronize(images.device)

    times: list[list[float]] = [[] for _ in models]
    with torch.no_grad():
        for model in models:
            for _ in range(warmup):
                model(images)
        for _ in range(repeats):
            for model, record in zip(models, times, strict=True):
                synchronize()
                start = time.perf_counter()
                model(images)
                synchronize()
                record.append(time.perf_counter() - start)
    return [images.shape[0] / statistics.median(record) for record in times]


def plain_vit(search: SearchableViT) -> VisionTransformer:
    """The baseline ViT inside a search model: its architecture and weights, without the masks."""
    plain = VisionTransformer(**vit_hyperparameters(search))
    weights = {name: value for name, value in search.state_dict().items() if name not in search.MASK_PARAMETERS}
    plain.load_state_dict(weights)
    return plain.to(search.cls_token.device, search.cls_token.dtype).eval()


def build_parser() -> jsonargparse.ArgumentParser:
    parser = tool_parser(
        "lit-vir slim",
        "Slim a ViT-Slim search checkpoint: keep the top fraction of each mask type over all blocks, build the "
        "physically smaller ViT, report params, FLOPs and throughput, and write a checkpoint and a config piece "
        "for fine-tuning per budget.",
        EXAMPLES,
        sections="data",
        config_help="a data piece giving the test data (default: the search run's config.yaml), or a config of "
        "this command's options (repeatable)",
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint of a search run (configs/slim/search.yaml)")
    parser.add_argument(
        "--budget", type=float, nargs="+", required=True, help="fraction(s) in (0, 1] of each mask type kept"
    )
    parser.add_argument("--attention-budget", type=float | None, help="the attention masks' own budget (--budget)")
    parser.add_argument("--mlp-budget", type=float | None, help="the MLP masks' own budget (default: --budget)")
    parser.add_argument("--token-budget", type=float | None, help="the token masks' own budget (default: --budget)")
    parser.add_argument(
        "--ranking",
        choices=("magnitude", "signed"),
        default="magnitude",
        help="rank ζ by |ζ| (default) or signed, as the original code does",
    )
    add_flag(parser, "--rank-class-token", "rank the class token with the patches (the original)")
    add_flag(parser, "--binarize", "kept ζ count as 1, not folded in as soft values (the original)")
    add_flag(parser, "--original", "the original code's slimming: --ranking signed --rank-class-token --binarize")
    parser.add_argument("--out", type=Path, default=Path("slim"), help="folder for the written files")
    parser.add_argument("--batch-size", type=int, default=64, help="images per timed forward pass")
    parser.add_argument("--warmup", type=int, default=3, help="untimed passes before timing")
    parser.add_argument("--repeats", type=int, default=10, help="timed passes; the median counts")
    parser.add_argument("--device", default="cpu", help="where to time the models: cpu, cuda, cuda:1")
    parser.add_argument("--threads", type=int | None, help="CPU threads for PyTorch (default: PyTorch's choice)")
    parser.add_argument("--json", type=str | None, help="write the measurements as JSON here, '-' for stdout")
    add_flag(parser, "--report-only", "measure and report, write no checkpoint/piece")
    add_flag(parser, "--no-accuracy", "skip the test accuracy of each slim model")
    parser.add_argument("--limit-batches", type=int | None, help="test accuracy on the first N test batches only")
    return parser


def check_options(args: jsonargparse.Namespace) -> None:
    """The budgets, counts and limits, before any checkpoint is read (a ConfigError names field, value, range)."""
    own = [(name, args[name]) for name in ("attention_budget", "mlp_budget", "token_budget") if args[name] is not None]
    for name, value in [("budget", value) for value in args.budget] + own:
        check_range("slim", name, value, low=0, high=1, low_inclusive=False, hint="It is the fraction kept.")
    for name, low in (("batch_size", 1), ("warmup", 0), ("repeats", 1), ("threads", 1), ("limit_batches", 1)):
        if args[name] is not None:
            check_range("slim", name, args[name], low=low)


def structure(model: SlimViT) -> dict:
    """Per block: heads, attention channels, MLP units, tokens."""
    blocks = model.blocks
    return {
        "heads": [len(block.attn.head_widths) for block in blocks],
        "attention_channels": [sum(block.attn.head_widths) for block in blocks],
        "mlp_units": [block.mlp.fc1.out_features for block in blocks],
        "tokens": [block.num_tokens for block in blocks],
    }


def classifier_checkpoint(model: SlimViT, source: dict, summary: dict) -> dict:
    """A Lightning checkpoint of `ImageClassifier(backbone=model)`, rebuilt from plain-data hyperparameters."""
    hparams = source.get("hyper_parameters", {})
    return {
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 0,
        "state_dict": {f"backbone.{name}": value.detach().cpu() for name, value in model.state_dict().items()},
        "hparams_name": "kwargs",
        "hyper_parameters": {
            "_class_path": "lit_vir.training.ImageClassifier",
            "backbone": {"class_path": "lit_vir.models.SlimViT", "init_args": dict(model.init_args)},
            "num_classes": model.num_classes,
            "label_smoothing": hparams.get("label_smoothing", 0.0),
            "_instantiator": "lightning.pytorch.cli.instantiate_module",
        },
        "vit_slim": summary,
    }


def config_piece(model: SlimViT, checkpoint: Path, row: dict, data_class: str | None) -> str:
    """The YAML piece for fine-tuning: model class and slim backbone, and the warm start from `checkpoint`."""
    linked = ("num_classes", "image_size", "in_channels")  # come from the datamodule
    init_args = {key: value for key, value in model.init_args.items() if key not in linked}
    body = {
        "model": {
            "class_path": "lit_vir.training.ImageClassifier",
            "init_args": {"backbone": {"class_path": "lit_vir.models.SlimViT", "init_args": init_args}},
        },
        "trainer": {
            "callbacks+": [
                {"class_path": "lit_vir.training.slim.WarmStart", "init_args": {"checkpoint": str(checkpoint)}}
            ]
        },
    }
    data = f"the search run's data ({data_class})" if data_class else "the search run's data"
    header = (
        f"# ViT-Slim at budget {row['budget']:.2f} (attention {row['attention_budget']:.2f}, "
        f"MLP {row['mlp_budget']:.2f}, tokens {row['token_budget']:.2f}),\n# slimmed from {row['source']}:\n"
        f"# {row['params']:,} parameters ({row['params_fraction']:.1%} of the full model), "
        f"{row['flops'] / 1e6:.2f} MFLOPs per image ({row['flops_fraction']:.1%}).\n"
        f"# Fine-tune it, composed after {data}:\n"
        f"#   lit-vir fit -c configs/vir.yaml -c <data piece> -c {checkpoint.with_suffix('.yaml')}\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=120)


def print_table(report: dict, console: Console) -> None:
    full, rows = report["full"], report["budgets"]
    table = Table(
        title=f"ViT-Slim: slimmed from {full['source']}",
        caption=(
            f"FLOPs per image (FlopCounterMode); img/s: median of {report['repeats']} passes of {report['batch_size']} "
            f"images on {report['device']} ({report['threads']} threads); speedup: against the plain ViT "
            f"({report['plain_vit_images_per_second']:.0f} img/s); heads, MLP: summed over blocks; tokens: "
            "first→last block; Δlogit: max |slim − masked model|; acc: test accuracy before fine-tuning "
            "(fine-tuned runs: lit-vir compare)"
        ),
        box=box.SIMPLE_HEAD,
    )
    for column in ("budget", "params", "MFLOPs", "img/s", "speedup", "heads", "MLP", "tokens", "Δlogit", "acc %"):
        table.add_column(column, justify="right")
    for row in (full, *rows):
        table.add_row(
            "full" if row is full else f"{row['budget']:.2f}",
            f"{row['params']:,} {row['params_fraction']:.0%}",
            f"{row['flops'] / 1e6:.2f} {row['flops_fraction']:.0%}",
            f"{row['images_per_second']:.0f}",
            f"{row['speedup']:.2f}×",
            str(sum(row["heads"])),
            str(sum(row["mlp_units"])),
            f"{row['tokens'][0]}→{row['tokens'][-1]}",
            f"{row['max_logit_difference']:.0e}",
            f"{100 * row['accuracy']:.2f}" if "accuracy" in row else "–",
        )
    console.print(table)


@user_errors()  # lit-vir's one-line messages and exit codes for what a user can fix
def main(argv: list[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_options(args)
    if args.original:
        args.ranking, args.rank_class_token, args.binarize = ORIGINAL.values()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(stderr=args.json == "-")
    source = read_checkpoint(args.checkpoint)
    search = load_classifier(args.checkpoint).backbone
    if not isinstance(search, SearchableViT):
        print(
            f"lit-vir slim: {args.checkpoint} is not a search checkpoint: its backbone is a {type(search).__name__}. "
            "Run the search phase first (configs/slim/search.yaml), then slim its checkpoint.",
            file=sys.stderr,
        )
        raise SystemExit(2)
    search.eval()
    options = vit_hyperparameters(search)
    shape = (options["in_channels"], options["image_size"], options["image_size"])
    images = torch.randn(args.batch_size, *shape, generator=torch.Generator().manual_seed(0))

    rows = [{"budget": 1.0, "attention_budget": 1.0, "mlp_budget": 1.0, "token_budget": 1.0}]
    for budget in args.budget:
        budgets = (args.attention_budget, args.mlp_budget, args.token_budget)
        names = ("attention_budget", "mlp_budget", "token_budget")
        rows.append({"budget": budget} | {name: value or budget for name, value in zip(names, budgets, strict=True)})
    models = []
    for row in rows:
        budgets = {key: value for key, value in row.items() if key != "budget"}
        keep = keep_masks(
            search, row["budget"], **budgets, ranking=args.ranking, rank_class_token=args.rank_class_token
        )
        slimmed = build_slim(search, keep, args.binarize)
        with torch.no_grad():
            masked = apply_keep_masks(search, keep, args.binarize)
            difference = (slimmed(images[:8]) - masked(images[:8])).abs().max().item()
        row |= {
            "source": str(args.checkpoint),
            "params": sum(parameter.numel() for parameter in slimmed.parameters()),
            "flops": count_flops(slimmed, images[:1]),
            "max_logit_difference": difference,
            **structure(slimmed),
        }
        models.append(slimmed)

    device = torch.device(args.device)
    plain = plain_vit(search)  # the reference for the speed-up: the budget-1 slim model is slower than it
    timed = [plain, *models]
    plain_speed, *speeds = measure_throughput(
        [model.to(device) for model in timed], images.to(device), args.warmup, args.repeats
    )
    if not args.no_accuracy:
        batches = test_batches(test_datamodule(parser, args, args.checkpoint), args.limit_batches)
        for row, model in zip(rows, models, strict=True):
            row["accuracy"] = accuracy(model, batches, device)  # before fine-tuning
    full, *rows = rows
    for row, speed in zip([full, *rows], speeds, strict=True):
        row |= {
            "images_per_second": speed,
            "speedup": speed / plain_speed,
            "params_fraction": row["params"] / full["params"],
            "flops_fraction": row["flops"] / full["flops"],
        }

    data_class = source.get("datamodule_hyper_parameters", {}).get("_class_path")
    for row, slimmed in zip(rows, models[1:], strict=True):
        if args.report_only:
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        checkpoint = (args.out / f"slim-b{row['budget']:.2f}.ckpt").resolve()
        summary = {key: value for key, value in row.items() if key not in ("images_per_second", "speedup")}
        AtomicCheckpointIO().save_checkpoint(classifier_checkpoint(slimmed.cpu(), source, summary), checkpoint)
        piece = checkpoint.with_suffix(".yaml")
        piece.write_text(config_piece(slimmed, checkpoint, row, data_class))
        row |= {"checkpoint": str(checkpoint), "config": str(piece)}

    report = {
        "source": str(args.checkpoint),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "flops_counted_by": "torch.utils.flop_counter.FlopCounterMode (2 per multiply-add), per image",
        "plain_vit_images_per_second": plain_speed,
        "speedup_against": "the plain VisionTransformer with the search run's weights (no masks)",
        "full": full,
        "budgets": rows,
    }
    print_table(report, console)
    text = json.dumps(report, indent=2)
    if args.json == "-":
        print(text)
        return
    if args.json is None and args.report_only:
        return
    target = Path(args.json) if args.json else args.out / "slim.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text + "\n")
    written = [str(target)] + [path for row in rows if "config" in row for path in (row["checkpoint"], row["config"])]
    console.print("wrote " + ", ".join(written))


if __name__ == "__main__":
    main(sys.argv[1:])
