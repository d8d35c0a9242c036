"""Parameters, forward FLOPs and speed of MobileViT-S and ExMobileViT-928 on Apple cvnets' backbone and on
the ExMobileViT repository's (`configs/model/exmobilevit_backbone.yaml`). Speed is measured as `lit-vir bench`
measures it (one fresh interpreter per model, median of `--repeats` after `--warmup`); FLOPs per image by
`torch.utils.flop_counter` (they do not depend on the machine's load). `lit-vir bench` takes one model
piece per model; these need two or three. From the repository root:

    OMP_NUM_THREADS=1 taskset -c 0 python scripts/bench_exmobilevit.py --data cifar10 --batch_size 32
    python scripts/bench_exmobilevit.py --data cifar10 --no_timing   # parameters and FLOPs only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from rich.console import Console
from torch.utils.flop_counter import FlopCounterMode

from lit_vir.cli import build_from_config
from lit_vir.commands.bench import run_worker, table
from lit_vir.models import count_parameters
from lit_vir.training.provenance import environment

MODELS = {
    "mobilevit_s (cvnets)": ["mobilevit"],
    "exmobilevit_928 (cvnets)": ["mobilevit", "exmobilevit"],
    "mobilevit_s (exmobilevit repo)": ["mobilevit", "exmobilevit_backbone"],
    "exmobilevit_928 (exmobilevit repo)": ["mobilevit", "exmobilevit_backbone", "exmobilevit"],
}


def forward_flops(config_args: list[str]) -> tuple[int, int]:
    """Trainable parameters and forward FLOPs of one image (eval mode, float32)."""
    model, datamodule = build_from_config(config_args)
    backbone = model.backbone.eval()
    image = torch.randn(1, datamodule.in_channels, datamodule.image_size, datamodule.image_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        backbone(image)
    return count_parameters(backbone).trainable, counter.get_total_flops()


def main(argv: list[str]) -> None:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("--data", default="cifar10", help="shapes of configs/data/<data>.yaml (no data is read)")
    parse.add_argument("--batch_size", type=int, default=32)
    parse.add_argument("--device", default="cpu")
    parse.add_argument("--warmup", type=int, default=2)
    parse.add_argument("--repeats", type=int, default=5)
    parse.add_argument("--output", default="bench-exmobilevit.json")
    parse.add_argument("--no_timing", action="store_true", help="parameters and FLOPs only")
    arguments = parse.parse_args(argv)
    configs = Path("configs")
    rows = []
    for name, pieces in MODELS.items():
        paths = [configs / "vir.yaml", configs / "data" / f"{arguments.data}.yaml"]
        paths += [configs / "model" / f"{piece}.yaml" for piece in pieces]
        job = {
            "spec": name,
            "precision": "32-true",
            "config_args": [item for path in paths for item in ("-c", str(path))],
            "batch_size": arguments.batch_size,
            "device": arguments.device,
            "warmup": arguments.warmup,
            "repeats": arguments.repeats,
        }
        params, flops = forward_flops(job["config_args"])
        rows.append({"model": name, "trainable_params": params, "forward_flops_per_image": flops})
        if not arguments.no_timing:
            rows[-1] |= run_worker(job)
    console = Console(width=170)
    for row in rows:
        console.print(
            f"{row['model']}: {row['trainable_params']:,} parameters, {row['forward_flops_per_image'] / 1e6:.1f} MFLOPs"
        )
    if not arguments.no_timing:
        console.print(table(rows, f"{arguments.data} shapes, batch {arguments.batch_size}, {arguments.device}"))
    output = {"settings": vars(arguments), "environment": environment(), "rows": rows}
    Path(arguments.output).write_text(json.dumps(output, indent=2))
    console.print(f"wrote {arguments.output}")


if __name__ == "__main__":
    main(sys.argv[1:])
