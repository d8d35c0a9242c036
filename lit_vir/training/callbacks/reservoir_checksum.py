"""Every DDP rank must train the same model: check that all ranks drew the same reservoirs.

Each rank draws W, V and b from the seed itself (nothing is broadcast), so a rank with another seed or another
torch build would silently train a different model. At setup every rank logs a checksum of its reservoirs and,
under DDP, all ranks compare them and stop with `ReservoirMismatchError` if they differ.
"""

from __future__ import annotations

import logging

import lightning as L
import torch

from lit_vir.training.guards import reservoir_checksum, verify_same_reservoirs

__all__ = ["ReservoirChecksum"]

log = logging.getLogger(__name__)


class ReservoirChecksum(L.Callback):
    """Logs `rank R: reservoir checksum XXXXXXXXXXXXXXXX` and verifies equality across ranks (a collective)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        checksum = reservoir_checksum(pl_module)
        log.info("rank %d: reservoir checksum %016x", trainer.global_rank, checksum)
        if trainer.world_size == 1:
            return
        gathered = trainer.strategy.all_gather(torch.tensor(checksum, dtype=torch.int64, device=pl_module.device))
        verify_same_reservoirs([int(value) for value in gathered.flatten().tolist()])
