"""ONNX: the model as an `.onnx` graph for onnxruntime and other runtimes, batch size dynamic.

Exported by `torch.onnx.export` with the dynamo exporter (`torch.export` traces the model, its ATen ops are
translated to ONNX operators, onnxscript's optimiser folds constants). It works for every lit_vir model (ViR in
all its forms, ViT, ReViT, ViT-Slim, ViTAEv2, MobileViT); where it cannot — an op ONNX has no operator for, a
branch on the data that a graph cannot hold — `ExportError` gives the exporter's reason in one line. A ViR's
reservoir runs its out-of-place steps when traced (`Reservoir.needs_graph`): T unrolled steps of MatMul, Add, Tanh.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lit_vir.export.verify import ExportError

__all__ = ["INPUT", "OUTPUT", "export_onnx", "onnx_session", "run_onnx"]

INPUT, OUTPUT = "images", "logits"


def exporter_reason(error: Exception) -> str:
    """The line that says why, from the exporter's long message ("## Exception summary"), without class paths."""
    text = str(error)
    summary = text.split("## Exception summary", 1)[-1]
    lines = [line.strip() for line in summary.splitlines() if line.strip().startswith("<class")]
    line = lines[0] if lines else text.strip().splitlines()[0]
    line = re.sub(r"^<class '[\w.]*?(\w+)'>: ", r"\1: ", line)
    return re.sub(r"\x1b\[[0-9;]*m", "", line)


@contextlib.contextmanager
def quiet():
    """Hold back the exporter's progress lines, warnings and the optimiser's log notes; failures still raise."""
    optimiser = logging.getLogger("onnxscript")
    level = optimiser.level
    optimiser.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optimiser.setLevel(level)


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path) -> None:
    """Write `model` (in evaluation mode) to `path` as ONNX, traced on `example` (B, C, H, W) with B dynamic."""
    batch = torch.export.Dim("batch", min=1)
    try:
        with torch.no_grad(), quiet():
            program = torch.onnx.export(
                model.eval(),
                (example,),
                dynamo=True,
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_shapes=({0: batch},),
                verbose=False,
            )
    except torch.onnx.OnnxExporterError as error:
        raise ExportError(f"ONNX export of {type(model).__name__} failed: {exporter_reason(error)}") from None
    except ImportError as error:
        raise ExportError(f"ONNX export needs onnx and onnxscript: pip install -e '.[onnx]' ({error}).") from None
    program.save(str(path))


def onnx_session(path: str | Path, threads: int = 0):
    """An onnxruntime CPU session of the model at `path` (`threads` intra-op threads; 0: onnxruntime's choice)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, images: torch.Tensor) -> np.ndarray:
    """Logits (B, classes) of `images` (B, C, H, W) by an onnxruntime session."""
    import onnxruntime

    try:
        return session.run([OUTPUT], {INPUT: images.numpy()})[0]
    except onnxruntime.capi.onnxruntime_pybind11_state.Fail as error:  # e.g. a batch size the graph fixed
        raise RuntimeError(str(error)) from None
