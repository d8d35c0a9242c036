"""Trained models out of lit_vir: ONNX, torch.export (`.pt2`), and a portable safetensors folder.

Layer: directly above `lit_vir/models`. It imports only torch, the model classes and the serialisation libraries —
no Lightning, no data layer — so `lit_vir.load_model(folder)` works in a deployment that has neither; reading a
Lightning checkpoint is the export command's part (`lit_vir/commands/export.py`). Every export is checked against
the PyTorch model before it is kept (`verify.check_logits`).
"""

from lit_vir.export.card import ModelCard, render_card
from lit_vir.export.onnx import export_onnx, onnx_session, run_onnx
from lit_vir.export.portable import build_backbone, load_model, read_manifest, save_portable
from lit_vir.export.program import export_program, load_program
from lit_vir.export.verify import TOLERANCE, ExportError, LogitCheck, check_logits

__all__ = [
    "TOLERANCE",
    "ExportError",
    "LogitCheck",
    "ModelCard",
    "build_backbone",
    "check_logits",
    "export_onnx",
    "export_program",
    "load_model",
    "load_program",
    "onnx_session",
    "read_manifest",
    "render_card",
    "run_onnx",
    "save_portable",
]
