"""Is decoding your own images the bottleneck? The image-folder pipeline's images/s against ViR-1's training
throughput, measured in one process, taking turns, on this machine.

    OMP_NUM_THREADS=1 taskset -c 0 python scripts/bench_image_pipeline.py --output docs/measurements/image-pipeline.json

It writes `--images` JPEG and PNG files of random sizes (48–160 px a side, smooth colour gradients plus noise, 10
classes) into a temporary folder and, with configs/data/image_folder.yaml's settings (32×32 RGB, batch 100), times
for each `--workers`:

- the check before training (`setup("fit")`: every image decoded once, its pixels summed): images/s;
- an epoch of the training loader (decode, resize, normalise, collate): images/s;

and ViR-1's training step at the same shapes (configs/vir.yaml on CIFAR-10 shapes: its loss, backward and Adam
step, as `lit-vir bench` times it): images/s. Loader epochs and training steps take turns, `--repeats` of each
after one warm-up, and the medians are compared, so a change in the machine's load falls on both. With the loader
in the training process (workers 0) a step waits for its batch: decoding then takes throughput_step /
throughput_loader of the time.
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
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lit_vir.commands.bench import config_args, configured_optimizer  # noqa: E402
from lit_vir.config import build_from_config  # noqa: E402
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


def loader_epoch(data: ImageFolderDataModule) -> float:
    """Images/s of one epoch of the training loader."""
    started, seen = time.perf_counter(), 0
    for images, _ in data.train_dataloader():
        seen += len(images)
    return seen / (time.perf_counter() - started)


def training_steps(batch: int, steps: int):
    """ViR-1 at CIFAR-10 shapes, as `lit-vir fit -c configs/vir.yaml` builds it; returns a function giving the
    images/s of `steps` training steps (forward, loss, backward, optimiser step) on a fixed random batch."""
    model, data = build_from_config(config_args("vir-1", "cifar10", REPO / "configs"))
    images = torch.randn(batch, data.in_channels, data.image_size, data.image_size)
    labels = torch.randint(0, data.num_classes, (batch,))
    optimizer = configured_optimizer(model)
    model.train()
    warnings.filterwarnings("ignore", message=".*self.log.*")  # no trainer: the step's logging does nothing

    def timed() -> float:
        started = time.perf_counter()
        for _ in range(steps):
            model.training_step((images, labels), 0).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return batch * steps / (time.perf_counter() - started)

    return timed


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
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="ViR-1 training steps per turn")
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
    train = training_steps(batch=100, steps=arguments.steps)
    train()  # warm-up
    steps = []
    with tempfile.TemporaryDirectory() as folder:
        write_images(Path(folder), arguments.images)
        for workers in arguments.workers:
            data = ImageFolderDataModule(folder, image_size=32, in_channels=3, batch_size=100, num_workers=workers)
            started = time.perf_counter()
            data.setup("fit")
            checked = len(data.splits["train"][1]) + len(data.splits["val"][1])
            row = {"workers": workers, "check_images_per_s": checked / (time.perf_counter() - started)}
            loader_epoch(data)  # warm-up
            rates = []
            for _ in range(arguments.repeats):
                rates.append(loader_epoch(data))
                steps.append(train())
            row["loader_images_per_s"] = rates
            row["loader_median_images_per_s"] = statistics.median(rates)
            result["pipeline"].append(row)
            print(json.dumps(row), flush=True)
    result["vir1_train_images_per_s"] = steps
    result["vir1_train_median_images_per_s"] = statistics.median(steps)
    for row in result["pipeline"]:
        row["decoding_share_of_a_step"] = result["vir1_train_median_images_per_s"] / row["loader_median_images_per_s"]
    result["load_average_after"] = os.getloadavg()
    print(json.dumps({key: result[key] for key in ("vir1_train_median_images_per_s", "load_average_after")}))
    if arguments.output:
        arguments.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
