"""Cell oracles' shared setup: norms with statistics and affines far from their identity initialisation, so
a branch that skips or misreads a norm changes the result."""

from __future__ import annotations

import torch


def randomize_norms(module: torch.nn.Module) -> torch.nn.Module:
    """float64, eval mode, every BatchNorm/LayerNorm with random affine (and running statistics)."""
    torch.manual_seed(0)
    module = module.double().eval()
    for norm in module.modules():
        if isinstance(norm, torch.nn.BatchNorm2d):
            norm.running_mean.normal_(0, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
        if isinstance(norm, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
            torch.nn.init.uniform_(norm.weight, 0.5, 1.5)
            torch.nn.init.normal_(norm.bias, 0, 0.2)
    return module
