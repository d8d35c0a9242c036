"""DataModules of corrupted test sets, with one test DataLoader per (corruption, severity) cell.

`CorruptionBenchmarkDataModule` is the contract shared by the published files (`cifar10c.py`) and the
generated corruptions here: it is test-only, `cells` lists (corruption, severity) in loader order —
corruption-major: every severity of the first corruption, then of the next — and `test_dataloader()`
returns one DataLoader per cell, so `test_step(batch, batch_idx, dataloader_idx)` finds its cell as
`datamodule.cells[dataloader_idx]`.

`CorruptedDataModule` corrupts the test split of any ImageDataModule with `lit_vir.data.corruptions`.
Cost: nothing is precomputed. Each cell corrupts its images lazily, in fixed chunks of `chunk_size`,
the first time its loader reads a chunk, and keeps only the chunk in use, so memory stays at the clean
test set plus one chunk per cell. Chunk k of a cell is corrupted with a generator seeded from
(seed, corruption, severity, k), so an image's corruption depends only on those and its index — not on
the batch size, the number of workers or the order of access. A whole 10,000-image CIFAR-sized cell
takes 0.04 s (contrast) to 5 s (zoom_blur) of one CPU core, 25 s for all 19 corruptions at one severity.
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset, TensorDataset
from torchvision.transforms import v2

from lit_vir.checks import ConfigError, check_choice, check_range
from lit_vir.data.base import ImageDataModule
from lit_vir.data.corruptions import BENCHMARK_CORRUPTIONS, CORRUPTIONS, SEVERITIES, corrupt
from lit_vir.data.images import Preprocessing

__all__ = ["CLEAN", "CorruptedDataModule", "CorruptedSplit", "CorruptionBenchmarkDataModule", "chunk_seed"]

CLEAN = "clean"  # the uncorrupted test set, listed among the cells as (CLEAN, 0) when included


class CorruptionBenchmarkDataModule(ImageDataModule):
    """Test-only loaders, one per (corruption, severity) cell; subclasses build each cell's dataset."""

    def __init__(
        self,
        corruptions: Sequence[str] | None = None,
        severities: Sequence[int] = SEVERITIES,
        root: str = "data",
        batch_size: int = 100,
        num_workers: int = 0,
        pin_memory: bool = False,
        download: bool = False,
        include_clean: bool = False,
    ) -> None:
        """
        Args:
            corruptions: names from `lit_vir.data.corruptions.CORRUPTIONS`; None: the 15 of the benchmark.
            severities: any of 1..5, in the order their loaders come.
            batch_size: test batch size.
            num_workers: loader worker processes (0 loads in the testing process).
            pin_memory: page-lock batches for faster host-to-GPU copies.
            include_clean: also test the uncorrupted test set, as the first cell ("clean", 0); relative
                corruption errors need it.
        """
        super().__init__(
            root=root, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory, download=download
        )
        owner = type(self).__name__
        self.corruptions = list(BENCHMARK_CORRUPTIONS if corruptions is None else corruptions)
        self.severities = list(severities)
        for name in self.corruptions:
            check_choice(owner, "corruptions", name, CORRUPTIONS)
        for severity in self.severities:
            check_range(owner, "severities", severity, low=SEVERITIES[0], high=SEVERITIES[-1], hint="1 is mildest.")
        for field, values in (("corruptions", self.corruptions), ("severities", self.severities)):
            if not values or len(set(values)) != len(values):
                raise ConfigError(f"{owner}: {field} = {values} must be non-empty, without repeats.")
        self.cells: list[tuple[str, int]] = [(CLEAN, 0)] if include_clean else []
        self.cells += [(name, severity) for name in self.corruptions for severity in self.severities]
        self.cell_sets: list[Dataset] | None = None

    @abstractmethod
    def cell_dataset(self, corruption: str, severity: int) -> Dataset:
        """The (image, label) pairs of one cell, normalised like the clean dataset."""

    @abstractmethod
    def clean_dataset(self) -> Dataset:
        """The uncorrupted test set, normalised like the cells."""

    def test_only(self, stage: str) -> ConfigError:
        return ConfigError(
            f"{type(self).__name__} holds only corrupted test images, so it cannot be used to {stage}. "
            "Train on the clean dataset, then test the checkpoint with this datamodule "
            "(`lit-vir test ... --ckpt_path <checkpoint>`)."
        )

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", "validate"):
            raise self.test_only(stage)
        if self.cell_sets is None:
            self.cell_sets = [
                self.clean_dataset() if name == CLEAN else self.cell_dataset(name, severity)
                for name, severity in self.cells
            ]

    def load_split(self, train: bool) -> Dataset:
        """All cells one after the other, in `cells` order; there is no training split."""
        if train:
            raise self.test_only("fit")
        self.setup("test")
        return ConcatDataset(self.cell_sets)

    def test_dataloader(self) -> list[DataLoader]:
        """One loader per cell, in `cells` order: loader i holds `cells[i]`."""
        if self.cell_sets is None:
            raise RuntimeError(f"{type(self).__name__}: setup('test') has not built the cells yet.")
        return [self._loader(cell_set, train=False) for cell_set in self.cell_sets]

    def predict_dataloader(self) -> list[DataLoader]:
        return self.test_dataloader()


def chunk_seed(seed: int, corruption: str, severity: int, chunk: int) -> int:
    """A 63-bit seed for one chunk of one cell, stable across processes and Python versions (unlike `hash`)."""
    digest = hashlib.blake2b(f"{seed}/{corruption}/{severity}/{chunk}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class CorruptedSplit(Dataset):
    """One cell: clean images (N, C, H, W) in [0, 1] corrupted chunk by chunk on first access, then
    normalised. The chunk in use is kept, so a sequential loader corrupts each chunk once."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        corruption: str,
        severity: int,
        seed: int,
        normalization: Callable[[Tensor], Tensor],
        chunk_size: int,
    ) -> None:
        self.images = images
        self.labels = labels
        self.corruption = corruption
        self.severity = severity
        self.seed = seed
        self.normalization = normalization
        self.chunk_size = chunk_size
        self.cached: tuple[int, Tensor] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        chunk, offset = divmod(index, self.chunk_size)
        return self.chunk(chunk)[offset], int(self.labels[index])

    def chunk(self, number: int) -> Tensor:
        if self.cached is None or self.cached[0] != number:
            start = number * self.chunk_size
            generator = torch.Generator().manual_seed(chunk_seed(self.seed, self.corruption, self.severity, number))
            corrupted = corrupt(self.images[start : start + self.chunk_size], self.corruption, self.severity, generator)
            self.cached = (number, self.normalization(corrupted))
        return self.cached[1]


class CorruptedDataModule(CorruptionBenchmarkDataModule):
    """The test split of `dataset`, corrupted by each of `corruptions` at each of `severities`.

    Images are taken in [0, 1] through the dataset's `pixel_transform`, corrupted, then normalised with
    the dataset's `normalization`; `num_classes`, `image_size` and `in_channels` are the dataset's.
    In a config:

        data:
          class_path: lit_vir.data.CorruptedDataModule
          init_args:
            dataset:
              class_path: lit_vir.data.MNISTDataModule
            severities: [3]
    """

    chunk_size = 250  # images corrupted together; part of what fixes the output, so not a setting

    def __init__(
        self,
        dataset: ImageDataModule,
        corruptions: Sequence[str] | None = None,
        severities: Sequence[int] = SEVERITIES,
        seed: int = 0,
        include_clean: bool = True,
        **loader: Any,
    ) -> None:
        """
        Args:
            dataset: the clean dataset whose test split is corrupted (any ImageDataModule).
            corruptions: names from `lit_vir.data.corruptions.CORRUPTIONS`; None: the 15 of the benchmark.
            severities: any of 1..5.
            seed: the corruption seed; with it, each image's corruption is fixed.
            include_clean: also test the uncorrupted test split, as the first cell ("clean", 0).
            loader: the test loaders' settings (`CorruptionBenchmarkDataModule`: batch_size, num_workers, pin_memory).
        """
        super().__init__(
            corruptions, severities, root=dataset.root, download=dataset.download, include_clean=include_clean, **loader
        )
        self.save_hyperparameters(ignore=["dataset"])  # a datamodule, not a value; the CLI's saved config has it
        self.dataset = dataset
        self.seed = seed
        self.clean: tuple[Tensor, Tensor] | None = None

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def image_size(self) -> int:
        return self.dataset.image_size

    @property
    def in_channels(self) -> int:
        return self.dataset.in_channels

    def preprocessing(self) -> Preprocessing:
        return self.dataset.preprocessing()

    def pixel_transform(self) -> v2.Transform:
        return self.dataset.pixel_transform()

    def normalization(self) -> v2.Transform:
        return self.dataset.normalization()

    def prepare_data(self) -> None:
        self.dataset.prepare_data()

    def clean_test_split(self) -> tuple[Tensor, Tensor]:
        """The dataset's test images (N, C, H, W) in [0, 1] and labels (N,), read once for all cells."""
        if self.clean is None:
            split = self.dataset.load_split(train=False)
            to_pixels = self.pixel_transform()
            pairs = [split[index] for index in range(len(split))]
            images = torch.stack([torch.as_tensor(to_pixels(image)) for image, _ in pairs])
            labels = torch.tensor([int(label) for _, label in pairs], dtype=torch.int64)
            self.clean = (images, labels)
        return self.clean

    def cell_dataset(self, corruption: str, severity: int) -> Dataset:
        images, labels = self.clean_test_split()
        return CorruptedSplit(images, labels, corruption, severity, self.seed, self.normalization(), self.chunk_size)

    def clean_dataset(self) -> Dataset:
        images, labels = self.clean_test_split()
        return TensorDataset(self.normalization()(images), labels)
