"""Is decoding your own images the bottleneck? The image-folder pipeline's images/s against ViR-1's training
throughput, measured in one process, one after the other, on this machine.

    OMP_NUM_THREADS=1 taskset -c 0 python scripts/bench_image_pipeline.py --output docs/measurements/image-pipeline.json

It writes `--images` JPEG and PNG files of random sizes (48–160 px a side, smooth colour gradients plus noise, 10
classes) into a temporary folder, then measures with configs/data/image_folder.yaml's settings (32×32 RGB, batch
100) for each `--workers`:

- the check before training (`setup("fit")`: every image decoded once, pixels summed): images/s;
- the training loader (decode, resize, normalise, collate): images/s per epoch, the median of `--repeats` epochs
  after one warm-up epoch;

and ViR-1's training step at the same shapes (`lit_vir.commands.bench.measure_model`: configs/vir.yaml on
CIFAR-10 shapes, the median of `--repeats` steps after `--warmup`). With the loader in the training process
(workers 0) a step waits for its batch, so the share of time decoding takes is throughput_step / throughput_loader.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lit_vir.commands.bench import config_args, measure_model  # noqa: E402
from lit_vir.data import ImageFolderDataModule  # noqa: E402
from lit_vir.training.provenance import cpu_name, environment  # noqa: E402


def write_images(folder: Path, count: int, seed: int = 0) -> None:
    """`count` images in 10 class folders: 3 of 4 JPEG (quality 90), 1 of 4 PNG, sides 48–160 px."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        width, height = rng.integers(48, 161, size=2)
        ramp = np.linspace(0, 1, width)[None, :, None] * np.linspace(0, 1, height)[:, None, None]
        colour = rng.uniform(0, 255, size=3)
        pixels = np.clip(ramp * colour + rng.normal(0, 20, size=(height, width, 3)), 0, 255).astype(np.uint8)
        path = folder / f"class{index % 10}" / f"{index:05d}.{'png' if index % 4 == 3 else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)


def loader_images_per_s(data: ImageFolderDataModule, repeats: int) -> list[float]:
    rates = []
    for epoch in range(repeats + 1):  # the first is a warm-up
        started, seen = time.perf_counter(), 0
        for images, _ in data.train_dataloader():
            seen += len(images)
        if epoch:
            rates.append(seen / (time.perf_counter() - started))
    return rates


def top_processes() -> list[str]:
    """What else was running: the busiest processes with the core they last ran on (ps)."""
    done = subprocess.run(
        ["ps", "-eo", "pid,psr,pcpu,comm", "--sort=-pcpu"], capture_output=True, text=True, check=False
    )
    return done.stdout.splitlines()[:8]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--output", type=Path, default=None)
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    result = {
        "command": " ".join(sys.argv),
        "commit": environment()["lit_vir_commit"],
        "cpu": cpu_name(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_before": os.getloadavg(),
        "processes_before": top_processes(),
        "images": arguments.images,
        "pipeline": [],
    }
    with tempfile.TemporaryDirectory() as folder:
        write_images(Path(folder), arguments.images)
        for workers in arguments.workers:
            data = ImageFolderDataModule(folder, image_size=32, in_channels=3, batch_size=100, num_workers=workers)
            started = time.perf_counter()
            data.setup("fit")
            check = len(data.splits["train"][1]) + len(data.splits["val"][1])
            check_rate = check / (time.perf_counter() - started)
            rates = loader_images_per_s(data, arguments.repeats)
            row = {"workers": workers, "check_images_per_s": check_rate, "loader_images_per_s": rates}
            row["loader_median_images_per_s"] = statistics.median(rates)
            result["pipeline"].append(row)
            print(json.dumps(row), flush=True)
    job = {
        "spec": "vir-1",
        "config_args": config_args("vir-1", "cifar10", REPO / "configs"),
        "device": "cpu",
        "batch_size": 100,
        "precision": "32-true",
        "warmup": arguments.warmup,
        "repeats": arguments.repeats,
    }
    step = measure_model(job)
    result["vir1_train_step_ms"] = step["train_step_ms"]
    result["vir1_train_images_per_s"] = step["images_per_s"]
    for row in result["pipeline"]:
        row["decoding_share_of_a_step"] = step["images_per_s"] / row["loader_median_images_per_s"]
    result["load_average_after"] = os.getloadavg()
    print(json.dumps({key: result[key] for key in ("vir1_train_images_per_s", "load_average_after")}))
    if arguments.output:
        arguments.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
