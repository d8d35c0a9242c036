"""`lit-vir bench`: parameters, memory and speed of models built from the configs, ViR against ViT.

Each (model, precision) is measured in a fresh worker process, so one model's allocations and caches do
not colour the next one's numbers. A worker builds the model exactly as `lit-vir fit` would (same
config pieces, through the same parser), feeds random images of the dataset's shape, and measures, after
`--warmup` untimed runs, the median of `--repeats` timed runs (CUDA events on a GPU):

- forward time (eval, no gradient) and training-step time: the module's own `training_step` (its loss,
  label smoothing and batch mixing, metric update), backward, and a step of the optimiser its
  `configure_optimizers` gives — the config's class, learning rate, weight decay and parameter groups
  (a learning-rate schedule is not stepped: it changes the rate, not a step's cost);
- peak memory of a training step (the second, once the optimiser's state exists): on CUDA the
  allocator's peak; on the CPU the highest resident set seen during the step (sampled every millisecond)
  minus what the interpreter held before the model was built — weights, gradients, optimiser state and
  activations alike. Until then glibc maps every block above 128 KiB on its own and unmaps it when freed,
  so the resident set follows the live tensors, not the allocator's cache of freed ones;
- for reservoirs, the recurrence alone next to T back-to-back (B×N)·(N×N) products of the same shapes —
  the floor no implementation of a sequential recurrence can beat on this hardware.

Every ViR row is compared with the ViT row of the same depth and precision measured in the same run.
"""

from __future__ import annotations

import ctypes
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import jsonargparse
import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from lit_vir.checks import ConfigError, check_range
from lit_vir.config import tool_parser, user_errors
from lit_vir.training.module import ImageClassifier

EXAMPLES = """\
examples:
  lit-vir bench                                         # ViR-1/3/6/12 and ViT-Base-1/3/6/12, CIFAR-10 shapes
  lit-vir bench --models vir-12 vir_serial-3 vit_base-12 --precision 32-true bf16-mixed
  lit-vir bench --data mnist --batch_size 100 --repeats 20 --output bench-mnist.json
  lit-vir bench --models vir-1 vit_small --device cpu --repeats 3 --warmup 1
  lit-vir bench --models revit-3 vit_small+revit-9 --pieces configs/recipe/strong.yaml
  lit-vir bench --models vir-1 --overrides model.backbone.init_args.num_nodes=500
  lit-vir bench --models vir-1 vit_base-1 --print_config > bench.yaml     # then: lit-vir bench -c bench.yaml

A model is `<family>[-<depth>]`: `vir` is configs/vir.yaml; any other family F adds configs/model/F.yaml
(vir_serial, vit_base, vit_small, revit, vitae_v2, mobilevit, exmobilevit, timm, ...), after the piece it
changes for those that hold only a change (revit after vit_base, exmobilevit after mobilevit, ...); `A+B`
composes configs/model/A.yaml then B.yaml as written (vit_small+revit: ReViT at ViT-Small width); or a model
piece's path, e.g. slim/slim-b0.50.yaml written by `lit-vir slim`. --pieces and --overrides apply to every
model, after its own pieces.
"""

DEFAULT_MODELS = ["vir-1", "vir-3", "vir-6", "vir-12", "vit_base-1", "vit_base-3", "vit_base-6", "vit_base-12"]
BASELINE_FAMILY = "vit_base"
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
# Model pieces that hold only what they change, and the piece each is composed after (their headers say so).
COMPOSED_AFTER = {
    "revit": "vit_base",  # ReViT at ViT-Base width, the paper's comparison
    "revit_fixed_alpha": "revit",
    "revit_mean_pooling": "revit",
    "exmobilevit": "mobilevit",
    "exmobilevit_backbone": "mobilevit",  # the ExMobileViT repository's backbone; `exmobilevit_backbone+exmobilevit`
    "timm_deit_tiny": "timm",
}


def parser() -> jsonargparse.ArgumentParser:
    parse = tool_parser("lit-vir bench", __doc__.split("\n\n")[0], EXAMPLES)
    parse.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="model specs, e.g. vir-12 vit_base-12")
    parse.add_argument("--data", default="cifar10", help="shapes of configs/data/<data>.yaml (no data is read)")
    parse.add_argument("--batch_size", type=int, default=100, help="images per step")
    parse.add_argument("--precision", nargs="+", default=["32-true"], choices=PRECISIONS, help="as trainer.precision")
    parse.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="where to measure")
    parse.add_argument("--warmup", type=int, default=3, help="untimed runs before timing")
    parse.add_argument("--repeats", type=int, default=10, help="timed runs; the median counts")
    parse.add_argument("--configs_dir", default="configs", help="where the config pieces are")
    parse.add_argument(
        "--pieces", nargs="*", default=[], help="config pieces composed after every model's, e.g. a recipe"
    )
    parse.add_argument(
        "--overrides",
        nargs="*",
        default=[],
        help="dotted overrides of every model's config, as for `lit-vir fit`: model.backbone.init_args.depth=2",
    )
    parse.add_argument("--output", default="bench.json", help="the JSON file of the measurements")
    return parse


def model_pieces(family: str, configs: Path) -> list[Path]:
    """configs/model pieces of a family: `vit_small+revit` as written; `revit` after the piece it changes."""
    if "+" in family:
        names = family.split("+")
    else:
        names = [family]
        while names[0] in COMPOSED_AFTER:
            names.insert(0, COMPOSED_AFTER[names[0]])
    return [configs / "model" / f"{name}.yaml" for name in names if name != "vir"]


def config_args(
    spec: str, data: str, configs: Path, pieces: Sequence[str] = (), overrides: Sequence[str] = ()
) -> list[str]:
    """The `-c` pieces and overrides that build `spec` (e.g. `vit_base-3`) on `data`'s shapes."""
    base = [configs / "vir.yaml", configs / "data" / f"{data}.yaml"]
    if spec.endswith(".yaml"):  # a model piece of its own, e.g. one written by `lit-vir slim`
        depth, files = "", [*base, Path(spec)]
    else:
        family, _, depth = spec.partition("-")
        files = [*base, *model_pieces(family, configs)]
    files += map(Path, pieces)
    for piece in files:
        if not piece.is_file():
            families = sorted(path.stem for path in (configs / "model").glob("*.yaml"))
            raise ConfigError(
                f"bench: no {piece} for model {spec!r}; the families in {configs / 'model'} are vir, "
                f"{', '.join(families)} (run from the repository root, or give --configs_dir)"
            )
    arguments = [item for piece in files for item in ("-c", str(piece))]
    arguments += ["--model.backbone.init_args.depth", depth] if depth else []
    return arguments + [f"--{override.removeprefix('--')}" for override in overrides]


def check_options(arguments: jsonargparse.Namespace) -> None:
    """Counts and overrides before any worker starts (a ConfigError names field, value, range)."""
    check_range("bench", "batch_size", arguments.batch_size, low=1)
    check_range("bench", "warmup", arguments.warmup, low=0)
    check_range("bench", "repeats", arguments.repeats, low=1)
    for override in arguments.overrides:
        if "=" not in override:
            raise ConfigError(
                f"bench: overrides = {override!r} is not KEY=VALUE, e.g. model.init_args.label_smoothing=0.1"
            )


def timer(device: torch.device) -> Callable[[Callable[[], object], int, int], float]:
    """Median milliseconds of `repeats` calls after `warmup` untimed ones (CUDA events on a GPU)."""

    def measure(work: Callable[[], object], warmup: int, repeats: int) -> float:
        for _ in range(warmup):
            work()
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                work()
                end.record()
                torch.cuda.synchronize(device)
                times.append(start.elapsed_time(end))
            else:
                started = time.perf_counter()
                work()
                times.append(1000 * (time.perf_counter() - started))
        return statistics.median(times)

    return measure


def resident_mib() -> float:
    """The process's current resident set (Linux /proc), else its peak so far."""
    statm = Path("/proc/self/statm")
    if statm.exists():
        return int(statm.read_text().split()[1]) * resource.getpagesize() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


class PeakResident:
    """The highest resident set seen while a block runs, sampled every millisecond by a thread (torch
    releases the GIL inside its kernels, so the sampler keeps running during the steps)."""

    def __enter__(self) -> PeakResident:
        self.peak = resident_mib()
        self.running = True
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, resident_mib())
            time.sleep(0.001)

    def __exit__(self, *exc_info) -> None:
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, resident_mib())


def glibc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): the resident set then includes the allocator's cache
        return None


LIVE_TENSORS_THRESHOLD = 128 * 2**10  # every tensor above 128 KiB gets its own mapping, unmapped when freed
GLIBC_STEADY_THRESHOLD = 32 * 2**20  # where glibc's own dynamic threshold ends up in a training loop


def set_mmap_threshold(size: int) -> None:
    """Serve blocks above `size` bytes by mmap from now on and give cached free blocks back. glibc otherwise
    raises its threshold to 32 MiB as tensors are freed and keeps freed tensors below it resident, so the
    resident set would count the allocator's cache as if it were live memory."""
    libc = glibc()
    if libc is not None:
        libc.mallopt(-3, size)  # M_MMAP_THRESHOLD
        libc.malloc_trim(0)


def peak_step_memory(train_step: Callable[[], None], device: torch.device, baseline: float) -> float:
    """MiB at the peak of one training step: the CUDA allocator's peak, or the CPU process's resident set
    above `baseline` (with `LIVE_TENSORS_THRESHOLD` set, live tensors are what stays resident)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        train_step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    with PeakResident() as resident:
        train_step()
    return resident.peak - baseline


def configured_optimizer(model: ImageClassifier) -> torch.optim.Optimizer:
    """The optimiser of the module's `configure_optimizers`: the config's class, learning rate, weight decay and
    parameter groups. Its schedule is left out — sizing a run-long one needs a trainer, and it changes the
    learning rate, not what a step costs."""
    schedule, model.scheduler_factory = model.scheduler_factory, None
    try:
        return model.configure_optimizers()
    finally:
        model.scheduler_factory = schedule


def measure_model(job: dict) -> dict:
    """Runs in the worker process: build one model and time it."""
    from lit_vir.config import build_from_config
    from lit_vir.models.counting import count_parameters

    set_mmap_threshold(LIVE_TENSORS_THRESHOLD)
    baseline = resident_mib()  # the interpreter with torch, before the model exists
    device = torch.device(job["device"])
    model, datamodule = build_from_config(job["config_args"])
    model = model.to(device)
    backbone = model.backbone
    counts = count_parameters(backbone)
    shape = (job["batch_size"], datamodule.in_channels, datamodule.image_size, datamodule.image_size)
    images = torch.randn(shape, device=device)
    labels = torch.randint(0, datamodule.num_classes, (job["batch_size"],), device=device)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(job["precision"])
    autocast = lambda: torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)  # noqa: E731
    measure = timer(device)
    optimizer = configured_optimizer(model)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    warnings.filterwarnings("ignore", message=".*self.log.*")  # no trainer logs here: the step's logging is a no-op

    def forward() -> None:
        with torch.no_grad(), autocast():
            backbone(images)

    def train_step() -> None:
        with autocast():
            loss = model.training_step((images, labels), 0)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    train_step()  # the optimiser's state exists from here on
    peak = peak_step_memory(train_step, device, baseline)
    set_mmap_threshold(GLIBC_STEADY_THRESHOLD)  # time the steps with glibc's usual reuse of freed blocks
    model.eval()
    forward_ms = measure(forward, job["warmup"], job["repeats"])
    model.train()
    step_ms = measure(train_step, job["warmup"], job["repeats"])
    row = {
        "model": job["spec"],
        "precision": job["precision"],
        "batch_size": job["batch_size"],
        "image_shape": list(shape[1:]),
        "trainable_params": counts.trainable,
        "frozen_params": counts.frozen,
        "fixed_params": counts.fixed,
        "optimizer": type(optimizer).__name__,
        "learning_rate": optimizer.param_groups[0]["lr"],
        "forward_ms": forward_ms,
        "train_step_ms": step_ms,
        "images_per_s": 1000 * job["batch_size"] / step_ms,
        "peak_memory_mib": peak,
    }
    return row | recurrence_floor(backbone, images, measure, job, autocast)


def recurrence_floor(backbone, images, measure, job: dict, autocast) -> dict:
    """The recurrence of the first reservoir bank vs T chained (L, B, N)·(L, N, N) products."""
    if not hasattr(backbone, "reservoirs"):
        return {}
    reservoir = backbone.reservoirs[0]
    precision = lambda: reservoir.precision(images.device.type)  # noqa: E731  (as in the model's forward)
    with torch.no_grad(), autocast(), precision():
        drive = reservoir.drive(backbone.embed(images))  # (L, B, T, N)
    steps = drive.shape[2]
    state = torch.zeros(drive[:, :, 0].shape, dtype=reservoir.weight.dtype, device=drive.device)

    work = drive.clone()  # without a graph the recurrence runs in its drive's memory; values do not matter

    def recurrence() -> None:
        with torch.no_grad(), autocast(), precision():
            reservoir.states(work)

    def floor() -> None:
        with torch.no_grad(), autocast(), precision():
            product = state
            for _ in range(steps):
                product = torch.bmm(product, reservoir.weight)

    recurrence_ms = measure(recurrence, job["warmup"], job["repeats"])
    floor_ms = measure(floor, job["warmup"], job["repeats"])
    return {
        "recurrence_ms": recurrence_ms,
        "matmul_floor_ms": floor_ms,
        "recurrence_over_floor": recurrence_ms / floor_ms,
    }


def run_worker(job: dict) -> dict:
    """Measure one job in a fresh interpreter; its last stdout line is the JSON row. A worker's own error
    (e.g. `lit-vir: invalid configuration: ...`) is passed on with its exit code."""
    done = subprocess.run(
        [sys.executable, "-m", "lit_vir.commands.bench", json.dumps(job)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        print(f"lit-vir bench: measuring {job['spec']} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
        raise SystemExit(done.returncode)
    return json.loads(done.stdout.strip().splitlines()[-1])


def add_ratios(rows: list[dict]) -> None:
    """Each row against the ViT-Base row of the same depth and precision, if one was measured."""
    baselines = {
        (row["model"].partition("-")[2], row["precision"]): row
        for row in rows
        if row["model"].partition("-")[0] == BASELINE_FAMILY
    }
    for row in rows:
        baseline = baselines.get((row["model"].partition("-")[2], row["precision"]))
        if baseline is None or baseline is row:
            continue
        row["vs"] = baseline["model"]
        row["trainable_params_ratio"] = row["trainable_params"] / baseline["trainable_params"]
        memory = baseline["peak_memory_mib"]
        row["peak_memory_ratio"] = row["peak_memory_mib"] / memory if memory > 0 else None
        row["train_step_speedup"] = baseline["train_step_ms"] / row["train_step_ms"]
        row["forward_speedup"] = baseline["forward_ms"] / row["forward_ms"]


def table(rows: list[dict], title: str) -> Table:
    shown = Table(title=title)
    for column in (
        "model",
        "precision",
        "trainable",
        "fixed",
        "fwd ms",
        "step ms",
        "img/s",
        "peak MiB",
        "recur/floor ms",
        "vs ViT: params",
        "memory",
        "speed-up",
    ):
        shown.add_column(column, justify="left" if column in ("model", "precision") else "right")
    for row in rows:
        recurrence = f"{row['recurrence_ms']:.1f}/{row['matmul_floor_ms']:.1f}" if "recurrence_ms" in row else ""
        ratios = (
            [
                f"{100 * row['trainable_params_ratio']:.1f}%",
                f"{100 * row['peak_memory_ratio']:.1f}%",
                f"{row['train_step_speedup']:.2f}×",
            ]
            if "vs" in row
            else ["", "", ""]
        )
        shown.add_row(
            row["model"],
            row["precision"],
            f"{row['trainable_params']:,}",
            f"{row['fixed_params']:,}",
            f"{row['forward_ms']:.1f}",
            f"{row['train_step_ms']:.1f}",
            f"{row['images_per_s']:.0f}",
            f"{row['peak_memory_mib']:.0f}",
            recurrence,
            *ratios,
        )
    return shown


@user_errors()  # lit-vir's one-line messages and exit codes for what a user can fix
def main(argv: list[str]) -> None:
    from lit_vir.training.provenance import environment

    parse = parser()
    arguments = parse.parse_args(argv)
    check_options(arguments)
    configs = Path(arguments.configs_dir)
    jobs = [
        {
            "spec": spec,
            "precision": precision,
            "config_args": config_args(spec, arguments.data, configs, arguments.pieces, arguments.overrides),
            "batch_size": arguments.batch_size,
            "device": arguments.device,
            "warmup": arguments.warmup,
            "repeats": arguments.repeats,
        }
        for spec in arguments.models
        for precision in arguments.precision
    ]
    console = Console(width=None if sys.stdout.isatty() else 170)
    rows = []
    with Progress(console=console) as progress:
        task = progress.add_task("measuring", total=len(jobs))
        for job in jobs:
            progress.update(task, description=f"{job['spec']} {job['precision']}")
            rows.append(run_worker(job))
            progress.advance(task)
    add_ratios(rows)
    title = f"{arguments.data} shapes, batch {arguments.batch_size}, {arguments.device}"
    console.print(table(rows, title))
    settings = {key: value for key, value in arguments.as_dict().items() if key != "config"}
    output = {"settings": settings, "environment": environment(), "rows": rows}
    Path(arguments.output).write_text(json.dumps(output, indent=2))
    console.print(f"wrote {arguments.output}")


if __name__ == "__main__":  # a worker: `python -m lit_vir.commands.bench JOB`, JOB a JSON object (see `run`)
    with user_errors():
        print(json.dumps(measure_model(json.loads(sys.argv[1]))))
