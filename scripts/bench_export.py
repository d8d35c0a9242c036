"""Exported models on this CPU: onnxruntime against PyTorch eager inference, and the time each export takes.

    OMP_NUM_THREADS=1 taskset -c 0 python scripts/bench_export.py --output docs/measurements/export-cpu.json

For ViR-1 (configs/vir.yaml) and ViT-Small (+ configs/model/vit_small.yaml) on CIFAR-10 shapes (3×32×32, 10
classes), built as `lit-vir fit` builds them (untrained: speed does not depend on the weights):

- the time to export to ONNX (dynamo exporter), torch.export (.pt2) and a safetensors folder, each once, as
  `lit-vir export` does it before its check;
- inference at batch 1 and 100 with one thread: PyTorch eager (`torch.no_grad`, evaluation mode) and onnxruntime
  (CPU provider, intra- and inter-op threads 1), each the median of `--repeats` runs after `--warmup`, the two
  taking turns run by run (so a change in the machine's load falls on both), and their ratio; the largest
  |Δlogit| between them is recorded too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lit_vir.commands.bench import config_args  # noqa: E402
from lit_vir.config import build_from_config  # noqa: E402
from lit_vir.export import export_onnx, export_program, onnx_session, run_onnx, save_portable  # noqa: E402
from lit_vir.training.provenance import cpu_name, environment  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from bench_image_pipeline import top_processes  # noqa: E402

MODELS = {"ViR-1": "vir-1", "ViT-Small": "vit_small"}


def alternating(first, second, warmup: int, repeats: int) -> tuple[float, float]:
    """Median milliseconds of `first` and of `second`, timed in turns after `warmup` untimed turns."""
    times: tuple[list[float], list[float]] = ([], [])
    for turn in range(warmup + repeats):
        for work, found in ((first, times[0]), (second, times[1])):
            started = time.perf_counter()
            work()
            if turn >= warmup:
                found.append(1000 * (time.perf_counter() - started))
    return statistics.median(times[0]), statistics.median(times[1])


def measure(name: str, spec: str, folder: Path, batches: list[int], warmup: int, repeats: int) -> dict:
    model, data = build_from_config(config_args(spec, "cifar10", REPO / "configs"))
    backbone = model.backbone.eval()
    shape = (data.in_channels, data.image_size, data.image_size)
    example = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    row = {"model": name, "parameters": sum(p.numel() for p in backbone.parameters()), "export_s": {}}
    exports = {
        "onnx": lambda: export_onnx(backbone, example, folder / f"{spec}.onnx"),
        "torch_export": lambda: export_program(backbone, example, folder / f"{spec}.pt2"),
        "safetensors": lambda: save_portable(folder / spec, backbone, {}, {}, ""),
    }
    for kind, export in exports.items():
        started = time.perf_counter()
        export()
        row["export_s"][kind] = time.perf_counter() - started
        print(name, kind, f"{row['export_s'][kind]:.1f} s", flush=True)
    session = onnx_session(folder / f"{spec}.onnx", threads=1)
    row["inference"] = []
    for batch in batches:
        images = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch))

        def eager(images: torch.Tensor = images) -> None:
            with torch.no_grad():
                backbone(images)

        eager_ms, onnx_ms = alternating(eager, lambda images=images: run_onnx(session, images), warmup, repeats)
        with torch.no_grad():
            difference = float(np.abs(run_onnx(session, images) - backbone(images).numpy()).max())
        result = {
            "batch": batch,
            "eager_ms": eager_ms,
            "onnxruntime_ms": onnx_ms,
            "onnxruntime_speedup": eager_ms / onnx_ms,
            "max_abs_logit_difference": difference,
        }
        row["inference"].append(result)
        print(name, json.dumps(result), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--output", type=Path, default=None)
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    result = {
        "command": " ".join(sys.argv),
        "commit": environment()["lit_vir_commit"],
        "cpu": cpu_name(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
        "python": platform.python_version(),
        "load_average_before": os.getloadavg(),
        "processes_before": top_processes(),
        "models": [],
    }
    with tempfile.TemporaryDirectory() as folder:
        for name, spec in MODELS.items():
            result["models"].append(
                measure(name, spec, Path(folder), arguments.batches, arguments.warmup, arguments.repeats)
            )
    result["load_average_after"] = os.getloadavg()
    if arguments.output:
        arguments.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
