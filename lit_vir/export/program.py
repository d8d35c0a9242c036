"""torch.export: the model as an `ExportedProgram` (`.pt2`), for deployment with PyTorch alone.

The program holds the traced graph of ATen ops and the weights (W and V included), batch size dynamic;
`torch.export.load(path).module()` runs it without lit_vir's code. A model `torch.export` cannot trace fails with
its reason in one line (`ExportError`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lit_vir.export.verify import ExportError

__all__ = ["export_program", "load_program"]


def export_program(model: nn.Module, example: torch.Tensor, path: str | Path) -> None:
    """Write `model` (in evaluation mode) to `path` as an ExportedProgram traced on `example` (B, C, H, W)."""
    batch = torch.export.Dim("batch", min=1)
    try:
        with torch.no_grad():
            program = torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},))
    except Exception as error:  # noqa: BLE001 — torch.export raises many types (user, guard, unsupported errors)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"torch.export of {type(model).__name__} failed: {type(error).__name__}: {reason}") from None
    torch.export.save(program, str(path))


def load_program(path: str | Path) -> nn.Module:
    """The runnable module of a saved ExportedProgram."""
    return torch.export.load(str(path)).module()
