"""Skip the reservoir recurrence after the first epoch when nothing that feeds it can change."""

from __future__ import annotations

import os

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from lit_vir.checks import ConfigError, check_choice, check_range
from lit_vir.models.state_cache import ReservoirStateCache

__all__ = ["CacheReservoirStates", "available_memory"]


def available_memory(device: torch.device) -> int:
    """Free bytes where the cache would live: the GPU's free memory, or the host's available RAM."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class CacheReservoirStates(L.Callback):
    """Cache every training image's reservoir states in the first epoch and reuse them after.

    Valid only when the states depend on the image alone: a parallel ViR with a fixed embedding and a
    datamodule without augmentation — checked at fit start, with a clear error otherwise. The memory
    needed (training images × L × T × N × bytes) is estimated up front and refused if it exceeds
    `memory_fraction` of what is free on the model's device. `dtype: bfloat16` halves it at the cost of
    rounding the cached states (the uncached epoch-one states stay float32).
    """

    def __init__(self, dtype: str = "float32", memory_fraction: float = 0.8) -> None:
        check_choice(type(self).__name__, "dtype", dtype, ("float32", "bfloat16", "float16"))
        check_range(type(self).__name__, "memory_fraction", memory_fraction, low=0, high=1, low_inclusive=False)
        self.dtype = getattr(torch, dtype)
        self.memory_fraction = memory_fraction

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        backbone, datamodule = pl_module.backbone, trainer.datamodule
        owner = type(self).__name__
        if not hasattr(backbone, "enable_state_cache"):
            raise ConfigError(f"{owner}: the backbone {type(backbone).__name__} has no reservoir states to cache.")
        if getattr(datamodule, "augment", True):
            raise ConfigError(f"{owner}: the training transform must be fixed; set data.init_args.augment: false.")
        images = len(datamodule.train_set)
        reservoir = backbone.reservoirs[0]
        shape = (reservoir.num_reservoirs, backbone.embedding.num_patches, reservoir.num_nodes)
        needed = ReservoirStateCache.bytes_needed(images, shape, self.dtype)
        free = available_memory(pl_module.device)
        if needed > self.memory_fraction * free:
            raise ConfigError(
                f"{owner}: caching {images} images × {shape} states in {self.dtype} needs {needed / 2**30:.2f} GiB, "
                f"but {free / 2**30:.2f} GiB is free on {pl_module.device} (limit memory_fraction = "
                f"{self.memory_fraction}). Use dtype: bfloat16, a smaller model, or train without the cache."
            )
        backbone.enable_state_cache(images, self.dtype)
        rank_zero_info(f"{owner}: {needed / 2**30:.2f} GiB for the states of {images} training images.")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.backbone.state_cache = None  # free the memory once training is over
