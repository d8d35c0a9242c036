"""The run folder's record of how the model reads images: `preprocessing.yaml` next to config.yaml.

The class names (in the order of the model's outputs), the image size and channels, the normalisation's mean and
standard deviation (for an image folder, computed from its training split) and the resize rule — what anyone
using the trained model on new images needs, readable without loading the checkpoint (which holds the same record,
saved by the datamodule's `state_dict`).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import yaml

from lit_vir.atomic import write_text_atomically

__all__ = ["SavePreprocessing"]


class SavePreprocessing(L.Callback):
    """Writes `preprocessing.yaml` into the run's log folder when training starts (rank zero; the training
    loader exists by then, so computed statistics are final)."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        folder = trainer.loggers[0].log_dir if trainer.loggers else None  # not trainer.log_dir: a collective
        if not trainer.is_global_zero or folder is None or not hasattr(datamodule, "preprocessing"):
            return
        record = datamodule.preprocessing().as_dict()
        write_text_atomically(Path(folder) / "preprocessing.yaml", yaml.safe_dump(record, sort_keys=False))
