"""The stochastic-depth schedule the ViT family shares (Huang et al. 2016, with timm's linear rule).

A network of n residual blocks given one `drop_path_rate` r drops the branch of block i (0-based, in depth
order) with probability r · i/(n − 1): the first block never, the deepest at r. The blocks themselves use
torchvision's `StochasticDepth`; only how the rate is spread over depth is decided here, once.
"""

from __future__ import annotations

import torch

__all__ = ["linear_drop_path_rates"]


def linear_drop_path_rates(drop_path_rate: float, depth: int) -> list[float]:
    """Stochastic-depth rate of each of `depth` blocks: linear from 0 to `drop_path_rate` (timm's rule)."""
    return torch.linspace(0, drop_path_rate, depth).tolist()
