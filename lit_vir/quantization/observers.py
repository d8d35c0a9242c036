"""A uniform random sample of the rows an activation site sees during calibration.

Per-tensor activation scales are fitted offline, for every bit width the search may ask for, by
comparing candidate grids on real activations (MPTQ-ViT, Tai & Wu 2024, calibrates on 256–1024 training
images). Keeping every row of every site would not fit in memory at ViT-Base width, so each site keeps at
most `max_values` numbers: the rows with the smallest random keys among all rows seen, which is a uniform
sample without replacement over the whole calibration stream, whatever the batch sizes.
"""

from __future__ import annotations

import torch

__all__ = ["RowSample"]


class RowSample:
    """Rows (last dimension = features) of every tensor passed to `add`, subsampled uniformly; `seen` counts
    every number passed, kept or not."""

    def __init__(self, max_values: int = 2**20, seed: int = 0) -> None:
        self.max_values = max_values
        self.generator = torch.Generator().manual_seed(seed)
        self.keys: torch.Tensor | None = None  # (R,)
        self.rows: torch.Tensor | None = None  # (R, F)
        self.seen = 0

    def add(self, tensor: torch.Tensor) -> None:
        self.seen += tensor.numel()
        rows = tensor.detach().reshape(-1, tensor.shape[-1])  # (rows, F)
        keys = torch.rand(rows.shape[0], generator=self.generator, device=self.generator.device).to(rows.device)
        if self.rows is not None:
            rows = torch.cat([self.rows, rows])
            keys = torch.cat([self.keys, keys])
        capacity = max(1, self.max_values // rows.shape[1])
        if rows.shape[0] > capacity:
            keys, kept = keys.topk(capacity, largest=False)
            rows = rows[kept]
        self.keys, self.rows = keys, rows

    def clear(self) -> None:
        self.keys = self.rows = None
        self.seen = 0
