"""`lit-vir export`: a trained checkpoint → a model that runs without lit_vir's training code, checked first.

  --format onnx          an .onnx graph for onnxruntime and other runtimes (the dynamo exporter), batch dynamic
  --format torch_export  a torch.export ExportedProgram (.pt2), for deployment with PyTorch alone
  --format safetensors   a folder: model.safetensors (every weight, W and V included), config.json (the model's
                         config, class names, preprocessing) and README.md, a model card; `lit_vir.load_model`
                         rebuilds the model from it with plain PyTorch

Each export is written beside its target and kept only when its logits on seeded batches of 1 and `--check_batch`
images are within `--tolerance` of the PyTorch model's (float32): onnxruntime runs the .onnx, torch.export.load the
.pt2, lit_vir.load_model the folder. The check's numbers and the export time are printed. A model that cannot be
exported in a format fails with the exporter's reason (exit 1), leaving nothing behind.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonargparse
import torch
import yaml
from rich.console import Console
from rich.table import Table
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

import lit_vir
from lit_vir.atomic import replaced_atomically
from lit_vir.checks import check_range
from lit_vir.config import tool_parser, user_errors
from lit_vir.export import (
    TOLERANCE,
    ExportError,
    LogitCheck,
    ModelCard,
    check_logits,
    export_onnx,
    export_program,
    load_model,
    load_program,
    onnx_session,
    render_card,
    run_onnx,
    save_portable,
)
from lit_vir.models.counting import count_parameters, forward_flops
from lit_vir.training.checkpoints import load_classifier, model_config, read_checkpoint, saved_preprocessing
from lit_vir.training.provenance import environment

EXAMPLES = """\
examples:
  lit-vir export --ckpt_path logs/vir-imagefolder/version_0/checkpoints/last.ckpt --format onnx
  lit-vir export --ckpt_path RUN/checkpoints/last.ckpt --format safetensors --output my_model
  lit-vir export --ckpt_path RUN/checkpoints/last.ckpt --format torch_export --check_batch 32
  python -c "import lit_vir; print(lit_vir.load_model('my_model'))"     # the safetensors folder, plain PyTorch

Without --output: beside the checkpoint, named for it (last.onnx, last.pt2, last_safetensors/).
"""

SUFFIXES = {"onnx": ".onnx", "torch_export": ".pt2", "safetensors": "_safetensors"}
EXAMPLE_BATCH = 2  # the batch the graph is traced on; the check runs other sizes


def parser() -> jsonargparse.ArgumentParser:
    parse = tool_parser("lit-vir export", __doc__.split("\n\n")[0], EXAMPLES)
    parse.add_argument("--ckpt_path", required=True, help="a checkpoint written by `lit-vir fit`")
    parse.add_argument("--format", choices=list(SUFFIXES), default="onnx", help="what to export to")
    parse.add_argument("--output", type=str | None, default=None, help="the file (onnx, torch_export) or folder")
    parse.add_argument("--check_batch", type=int, default=8, help="the larger batch of the check (the other: 1)")
    parse.add_argument("--tolerance", type=float, default=TOLERANCE, help="largest |Δlogit| accepted")
    return parse


def main(argv: list[str]) -> None:
    arguments = parser().parse_args(argv)
    check_range("export", "check_batch", arguments.check_batch, low=1)
    check_range("export", "tolerance", arguments.tolerance, low=0)
    try:
        with user_errors():
            export(arguments)
    except ExportError as error:
        print(f"lit-vir: export failed: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def export(arguments: jsonargparse.Namespace) -> None:
    path = Path(arguments.ckpt_path)
    checkpoint = read_checkpoint(path)
    backbone = load_classifier(path).backbone.eval()
    backbone_config = model_config(checkpoint, path)["init_args"]["backbone"]
    sizes = backbone_config["init_args"]
    shape = (sizes["in_channels"], sizes["image_size"], sizes["image_size"])
    target = Path(arguments.output or path.with_name(path.stem + SUFFIXES[arguments.format]))
    batches = (1, arguments.check_batch)
    console = Console()
    with console.status(f"exporting {type(backbone).__name__} to {arguments.format}"):
        started = time.perf_counter()
        if arguments.format == "safetensors":
            card = model_card(path, checkpoint, backbone, backbone_config)
            with replaced_atomically(target, folder=True) as partial:
                save_portable(partial, backbone, backbone_config, saved_preprocessing(checkpoint, path), card)
                seconds = time.perf_counter() - started
                checks = check_logits(backbone, load_model(partial), shape, batches, arguments.tolerance)
        else:
            write, runner = FORMATS[arguments.format]
            example = torch.randn(EXAMPLE_BATCH, *shape, generator=torch.Generator().manual_seed(0))
            with replaced_atomically(target) as partial:
                write(backbone, example, partial)
                seconds = time.perf_counter() - started
                checks = check_logits(backbone, runner(partial), shape, batches, arguments.tolerance)
    report(console, arguments.format, target, seconds, checks)


def onnx_runner(path: Path) -> Callable[[torch.Tensor], Any]:
    try:
        session = onnx_session(path)
    except ImportError:
        raise ExportError("the ONNX check needs onnxruntime: pip install -e '.[onnx]'") from None
    return lambda images: run_onnx(session, images)


def program_runner(path: Path) -> Callable[[torch.Tensor], Any]:
    module = load_program(path)
    return lambda images: module(images).detach()


FORMATS = {"onnx": (export_onnx, onnx_runner), "torch_export": (export_program, program_runner)}


def report(console: Console, format_name: str, target: Path, seconds: float, checks: list[LogitCheck]) -> None:
    table = Table(title=f"{format_name} against PyTorch (float32), seeded standard-normal images")
    for column in ("batch", "max |Δlogit|", "tolerance", "check"):
        table.add_column(column, justify="right")
    for check in checks:
        verdict = "passed" if check.passed else "FAILED"
        table.add_row(str(check.batch), f"{check.max_abs_difference:.3g}", f"{check.tolerance:g}", verdict)
    console.print(table)
    console.print(f"wrote {target} (exported in {seconds:.1f} s)")


def model_card(path: Path, checkpoint: dict[str, Any], backbone: nn.Module, config: dict[str, Any]) -> str:
    """The card's facts: the model, its run's records (config.yaml, environment.yaml, TensorBoard scalars, all in
    the run folder that holds checkpoints/) and the model's own counts."""
    run = path.resolve().parent.parent
    run_config = read_yaml(run / "config.yaml")
    trained = read_yaml(run / "environment.yaml")
    data = run_config.get("data") or {}
    data_args = data.get("init_args") or {}
    where = next((f" ({key}: {data_args[key]})" for key in ("root", "dataset") if data_args.get(key)), "")
    depth = getattr(backbone, "depth", None)
    images = torch.zeros(1, config["init_args"]["in_channels"], *(2 * [config["init_args"]["image_size"]]))
    exporting = environment()["lit_vir_commit"]
    card = ModelCard(
        model=f"{type(backbone).__name__}{f'-{depth}' if depth else ''} (`{config['class_path']}`)",
        checkpoint=str(path),
        dataset=f"`{data['class_path']}`{where}" if data else "not recorded (no config.yaml beside checkpoints/)",
        test_accuracy=recorded_test_accuracy(run, path, checkpoint),
        parameters=count_parameters(backbone),
        flops_per_image=forward_flops(backbone, images),
        preprocessing=saved_preprocessing(checkpoint, path),
        command=" ".join(trained.get("command") or ["not recorded"]),
        commit=str(trained.get("lit_vir_commit") or "not recorded"),
        trained_on=", ".join(str(trained[key]) for key in ("cpu", "cuda_device", "machine") if trained.get(key))
        or "not recorded",
        exported_with=f"lit_vir {lit_vir.__version__} (commit {exporting}), torch {torch.__version__}",
    )
    return render_card(card)


def read_yaml(path: Path) -> dict[str, Any]:
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def recorded_test_accuracy(run: Path, path: Path, checkpoint: dict[str, Any]) -> str:
    """The test accuracy the run logged for these weights (`fit --test_after_fit`): `test_last/acc` for last.ckpt
    (the final weights), `test/acc` for the best-validation checkpoint; nothing is measured here."""
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    best = [
        state.get("best_model_path")
        for name, state in (checkpoint.get("callbacks") or {}).items()
        if "ModelCheckpoint" in name and isinstance(state, dict)
    ]
    if path.name == "last.ckpt" and "test_last/acc" in scalars:
        tag, which = "test_last/acc", "the final weights"
    elif path.name != "last.ckpt" and "test/acc" in scalars and any(Path(b or "").name == path.name for b in best):
        tag, which = "test/acc", "the best-validation checkpoint"
    else:
        return "not recorded for these weights (train with `--test_after_fit true`, export last.ckpt or the best)"
    return f"{events.Scalars(tag)[-1].value:.4f} (`{tag}` of the run: {which}, which this is)"
