"""Parameters and speed of MobileViT-S and ExMobileViT-928 on Apple cvnets' backbone and on the ExMobileViT
repository's (`configs/model/exmobilevit_backbone.yaml`), measured as `lit-vir bench` measures (one fresh
interpreter per model, median of `--repeats` after `--warmup`). `lit-vir bench` takes one model piece per
model; these need two or three. From the repository root:

    OMP_NUM_THREADS=1 taskset -c 0 python scripts/bench_exmobilevit.py --data cifar10 --batch_size 32
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console

from lit_vir.commands.bench import run_worker, table
from lit_vir.training.provenance import environment

MODELS = {
    "mobilevit_s (cvnets)": ["mobilevit"],
    "exmobilevit_928 (cvnets)": ["mobilevit", "exmobilevit"],
    "mobilevit_s (exmobilevit repo)": ["mobilevit", "exmobilevit_backbone"],
    "exmobilevit_928 (exmobilevit repo)": ["mobilevit", "exmobilevit_backbone", "exmobilevit"],
}


def main(argv: list[str]) -> None:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("--data", default="cifar10", help="shapes of configs/data/<data>.yaml (no data is read)")
    parse.add_argument("--batch_size", type=int, default=32)
    parse.add_argument("--device", default="cpu")
    parse.add_argument("--warmup", type=int, default=2)
    parse.add_argument("--repeats", type=int, default=5)
    parse.add_argument("--output", default="bench-exmobilevit.json")
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
        rows.append(run_worker(job))
    console = Console(width=170)
    console.print(table(rows, f"{arguments.data} shapes, batch {arguments.batch_size}, {arguments.device}"))
    output = {"settings": vars(arguments), "environment": environment(), "rows": rows}
    Path(arguments.output).write_text(json.dumps(output, indent=2))
    console.print(f"wrote {arguments.output}")


if __name__ == "__main__":
    main(sys.argv[1:])
