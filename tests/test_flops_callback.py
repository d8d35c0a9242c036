"""`TrainingFlops` in a real Trainer on a tiny model, against a count by hand: FLOPs per image of one training
step (forward, and the weight gradient only: the images need none), the cumulative and total FLOPs over the images
trained, a module's own count where it trains otherwise, a resume, and nothing without an image shape."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_vir.training.callbacks.flops import TrainingFlops
from tests.callback_runs import Tiny, logged, logged_fit

PER_IMAGE = 2 * 4 * 3 + 2 * 4 * 3  # Linear(4 → 3): forward, and its weight gradient


class Data(L.LightningDataModule):
    def __init__(self, shaped: bool = True, classes: bool = True, channels: bool = True) -> None:
        super().__init__()
        if shaped:
            self.image_size = 2
            if channels:
                self.in_channels = 1
            if classes:
                self.num_classes = 3

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.randn(50, 1, 2, 2), torch.arange(50) % 3), batch_size=16)

    def val_dataloader(self) -> DataLoader:
        return self.train_dataloader()


class Counting(Tiny):
    """A module that trains otherwise than by backprop and says what one step costs."""

    def __init__(self, own_count: int) -> None:
        super().__init__()
        self.count_training_flops = lambda images: own_count * len(images)


def fit(folder: Path, callback: TrainingFlops, data: Data, module: Tiny | None = None, epochs: int = 2) -> list:
    return logged_fit(folder, callback, module or Tiny(), datamodule=data, max_epochs=epochs)


def test_flops_per_image_and_their_sums_over_the_images_trained(tmp_path):
    callback = TrainingFlops()
    rows = fit(tmp_path, callback, Data())
    assert callback.flops_per_image == PER_IMAGE
    assert logged(rows, "perf/train_flops_per_image") == [PER_IMAGE, PER_IMAGE]
    assert logged(rows, "perf/train_flops") == [PER_IMAGE * 50, PER_IMAGE * 100]  # after each epoch
    assert logged(rows, "perf/train_flops_total") == [PER_IMAGE * 100]
    assert [row["step"] for row in rows if row.get("perf/train_flops_total")] == ["8"]  # at the run's last step


def test_a_module_that_counts_its_own_training_step_is_taken_at_its_word(tmp_path):
    rows = fit(tmp_path, TrainingFlops(), Data(), Counting(own_count=1000), epochs=1)
    assert logged(rows, "perf/train_flops_per_image") == [1000] and logged(rows, "perf/train_flops_total") == [50_000]


def test_a_resumed_run_keeps_counting(tmp_path):
    callback = TrainingFlops()
    callback.load_state_dict({"images_seen": 30})
    rows = fit(tmp_path, callback, Data(), epochs=1)
    assert logged(rows, "perf/train_flops_total") == [PER_IMAGE * 80] and callback.state_dict() == {"images_seen": 80}


def test_without_an_image_shape_nothing_is_counted_or_logged(tmp_path):
    callback = TrainingFlops()
    rows = fit(tmp_path, callback, Data(shaped=False), epochs=1)
    assert callback.flops_per_image is None
    assert not any(tag.startswith("perf/train_flops") for row in rows for tag, value in row.items() if value)


def test_only_a_fit_is_counted(tmp_path):
    callback = TrainingFlops()
    L.Trainer(logger=False, callbacks=[callback], enable_progress_bar=False).validate(Tiny(), datamodule=Data())
    assert callback.flops_per_image is None


class Bare(Tiny):
    """A module that is its own network: no `backbone` attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = self.backbone
        del self.backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layer(images)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        return nn.functional.cross_entropy(self(images), labels)


def test_a_module_without_a_backbone_is_counted_whole_and_a_datamodule_without_classes_is_fine(tmp_path):
    callback = TrainingFlops()
    fit(tmp_path / "bare", callback, Data(), Bare(), epochs=1)
    assert callback.flops_per_image == PER_IMAGE
    classless = TrainingFlops()
    fit(tmp_path / "classless", classless, Data(classes=False), epochs=1)
    assert classless.flops_per_image == PER_IMAGE  # two classes assumed for the labels: the FLOPs are the same


def test_an_image_shape_needs_both_size_and_channels(tmp_path):
    callback = TrainingFlops()
    fit(tmp_path, callback, Data(channels=False), epochs=1)
    assert callback.flops_per_image is None
