"""The check every export ends with: the exported model's logits against PyTorch's own, in float32, on a batch.

The images are seeded standard-normal draws of the model's input shape (what normalised pixels look like), at two
batch sizes — 1 and `batch` — so the check also proves the batch dimension was exported as dynamic. The export
is kept only when the largest absolute difference of any logit is at most `tolerance` (1e-4 by default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["TOLERANCE", "ExportError", "LogitCheck", "check_images", "check_logits"]

TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """An export that cannot be made or does not reproduce the model: the message says why."""


@dataclass(frozen=True)
class LogitCheck:
    """max |exported − PyTorch| over the logits of a batch of `batch` images."""

    batch: int
    max_abs_difference: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_difference <= self.tolerance

    def __str__(self) -> str:
        verdict = "≤" if self.passed else ">"
        return f"batch {self.batch}: max |Δlogit| = {self.max_abs_difference:.3g} {verdict} {self.tolerance:g}"


def check_images(shape: tuple[int, int, int], batch: int, seed: int = 0) -> torch.Tensor:
    """`batch` seeded standard-normal images of `shape` (C, H, W), float32."""
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed))


def check_logits(
    model: nn.Module,
    run_exported: Callable[[torch.Tensor], np.ndarray | torch.Tensor],
    shape: tuple[int, int, int],
    batches: tuple[int, ...],
    tolerance: float = TOLERANCE,
) -> list[LogitCheck]:
    """Compare `run_exported(images)` with the model's float32 logits at each batch size; ExportError when the
    exported model refuses a batch size (its batch was not exported as dynamic) or gives other logits."""
    checks = []
    model = model.eval()
    for batch in batches:
        images = check_images(shape, batch, seed=batch)
        try:
            with torch.no_grad():
                expected = model(images).float()
                found = torch.as_tensor(np.asarray(run_exported(images))).float()
        except (RuntimeError, ValueError) as error:
            raise ExportError(
                f"the exported model does not run on a batch of {batch}: {str(error).splitlines()[0]}"
            ) from None
        if found.shape != expected.shape:
            raise ExportError(
                f"the exported model gives logits of shape {tuple(found.shape)}, not {tuple(expected.shape)}"
            )
        checks.append(LogitCheck(batch, float((found - expected).abs().max()), tolerance))
    failed = [check for check in checks if not check.passed]
    if failed:
        raise ExportError(f"the exported model's logits differ from PyTorch's: {'; '.join(map(str, failed))}")
    return checks
