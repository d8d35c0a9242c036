"""The shared plumbing of every image-classification DataModule in lit_vir.

`prepare_data` runs on one process per node: it finds the raw files (data root, then the places
system packages install them) or downloads them, and assigns no state. `setup` runs on every
process: it reads the files, splits a seeded validation set off the training set and attaches the
transforms. Images reach the model as float tensors, normalised per dataset; `pixel_transform`
(before normalisation) is the hook the corruption benchmarks use.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from lit_vir.checks import ConfigError, check_choice, check_range
from lit_vir.data.images import Preprocessing

__all__ = ["AutoAugment", "ImageDataModule", "TransformedSubset"]

AutoAugment = Literal["rand_augment", "trivial_augment"]
# TrivialAugmentWide translates by up to 32 pixels whatever the image size: below this size most of its
# translations empty the image. RandAugment's are relative (13.6% of the side at magnitude 9).
TRIVIAL_AUGMENT_MIN_SIZE = 16


class TransformedSubset(Dataset):
    """A view of `dataset` at `indices` with its own transform, so one loaded dataset serves the
    augmented training split and the plain validation split."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], transform: Callable[[Any], torch.Tensor]) -> None:
        self.dataset = dataset
        self.indices = indices
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[self.indices[index]]
        return self.transform(image), int(label)

    def source(self, index: int) -> str:
        """Where item `index` comes from: the dataset's own name for it (a file's path), else its index there."""
        inner = self.indices[index]
        return self.dataset.source(inner) if hasattr(self.dataset, "source") else str(inner)


class ImageDataModule(L.LightningDataModule, ABC):
    """Train / validation / test loaders for one labelled image dataset.

    Subclasses set the class attributes that the model is linked to (`num_classes`, `image_size`,
    `in_channels`), the normalisation (`mean`, `std`), and implement `prepare_data`,
    `load_split(train)` and optionally `augmentation()`.
    """

    num_classes: int
    image_size: int
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __init__(
        self,
        root: str = "data",
        batch_size: int = 100,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        val_size: float = 0.1,
        split_seed: int = 42,
        augment: bool = False,
        auto_augment: AutoAugment | None = None,
        rand_augment_ops: int = 2,
        rand_augment_magnitude: int = 9,
        random_erasing: float = 0.0,
        download: bool = True,
        persistent_workers: bool = False,
    ) -> None:
        """
        Args:
            root: the data root; each dataset keeps its torchvision folder layout below it.
            batch_size: training batch size (per process under DDP).
            eval_batch_size: validation/test batch size; defaults to `batch_size`.
            num_workers: loader worker processes (0 loads in the training process).
            pin_memory: page-lock batches for faster host-to-GPU copies.
            val_size: validation images split off the training set: a fraction in (0, 1) or a count.
            split_seed: seed of that split (independent of the training seed).
            augment: the dataset's training augmentation (CIFAR: random crop with padding 4 + flip).
            auto_augment: a learned-policy-free augmentation of training images (torchvision v2), before
                the dataset's: `rand_augment` (RandAugment, Cubuk et al. 2020: `rand_augment_ops` random ops
                at `rand_augment_magnitude` of 31) or `trivial_augment` (TrivialAugmentWide, Müller & Hutter
                2021: one op at a random strength; refused below 16 px, its 32-pixel shifts empty the image).
            rand_augment_ops: RandAugment's N (DeiT: 2).
            rand_augment_magnitude: RandAugment's M in 0..30 (DeiT: 9).
            random_erasing: probability of RandomErasing (Zhong et al. 2020) on a training image, after
                normalisation, erasing 2–33% of it with random values (DeiT: 0.25); 0 is off.
            download: download missing files (needs the internet); otherwise fail with the file list.
            persistent_workers: keep loader workers between epochs (faster epoch starts; a resumed run
                then draws different augmentations than a straight one, since workers restart seeded).
        """
        super().__init__()
        owner = type(self).__name__
        check_range(owner, "batch_size", batch_size, low=1)
        check_range(owner, "num_workers", num_workers, low=0)
        check_range(
            owner,
            "val_size",
            val_size,
            low=0,
            low_inclusive=False,
            hint="Give a fraction in (0, 1) or a number of images.",
        )
        if auto_augment is not None:
            check_choice(owner, "auto_augment", auto_augment, ("rand_augment", "trivial_augment"))
        check_range(owner, "rand_augment_ops", rand_augment_ops, low=1)
        check_range(owner, "rand_augment_magnitude", rand_augment_magnitude, low=0, high=30)
        check_range(owner, "random_erasing", random_erasing, low=0, high=1)
        self.save_hyperparameters()
        self.root = root
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.val_size = val_size
        self.split_seed = split_seed
        self.augment = augment
        self.auto_augment = auto_augment
        self.rand_augment_ops = rand_augment_ops
        self.rand_augment_magnitude = rand_augment_magnitude
        self.random_erasing = random_erasing
        if auto_augment == "trivial_augment" and self.image_size < TRIVIAL_AUGMENT_MIN_SIZE:
            raise ConfigError(
                f"{owner}: auto_augment = 'trivial_augment' at {self.image_size}×{self.image_size} px: its "
                f"translations reach 32 px and would empty most images (allowed from {TRIVIAL_AUGMENT_MIN_SIZE} px). "
                "Use auto_augment: rand_augment, whose shifts are relative to the image."
            )
        self.download = download
        self.persistent_workers = persistent_workers and num_workers > 0
        # Shuffling and worker seeds come from this generator, not the global one; its state is saved in
        # checkpoints (state_dict), so a resumed run shuffles exactly as a straight run would.
        self.shuffle_generator = torch.Generator()
        self.shuffle_generator.manual_seed(torch.initial_seed())  # the run's seed (seed_everything), any 64-bit value
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        """The name of each class index; "0", "1", ... unless the dataset has names."""
        return tuple(str(index) for index in range(self.num_classes))

    def preprocessing(self) -> Preprocessing:
        """What a model trained on these images needs to read a new one (saved in checkpoints by `state_dict`)."""
        return Preprocessing(self.image_size, self.in_channels, tuple(self.mean), tuple(self.std), self.class_names)

    @abstractmethod
    def load_split(self, train: bool) -> Dataset:
        """The raw training or test split, yielding (image, label) with images as PIL or tensors."""

    def augmentation(self) -> list[v2.Transform]:
        """Training-only transforms on float images in [0, 1]; none by default."""
        return []

    def pixel_transform(self) -> v2.Transform:
        """Raw image → float tensor (C, H, W) in [0, 1]."""
        return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])

    def normalization(self) -> v2.Transform:
        return v2.Normalize(self.mean, self.std)

    def policy(self) -> list[v2.Transform]:
        """The `auto_augment` policy, on [0, 1] images."""
        if self.auto_augment == "rand_augment":
            return [v2.RandAugment(num_ops=self.rand_augment_ops, magnitude=self.rand_augment_magnitude)]
        return [v2.TrivialAugmentWide()] if self.auto_augment == "trivial_augment" else []

    def train_transform(self) -> v2.Transform:
        augmentation = self.augmentation() if self.augment else []
        erasing = [v2.RandomErasing(self.random_erasing, value="random")] if self.random_erasing > 0 else []
        return v2.Compose([self.pixel_transform(), *self.policy(), *augmentation, self.normalization(), *erasing])

    def eval_transform(self) -> v2.Transform:
        return v2.Compose([self.pixel_transform(), self.normalization()])

    def split_indices(self, size: int) -> tuple[list[int], list[int]]:
        """Seeded train/validation indices of a training set of `size` images."""
        val_count = round(self.val_size * size) if self.val_size < 1 else int(self.val_size)
        if not 0 < val_count < size:
            raise ConfigError(
                f"{type(self).__name__}: val_size = {self.val_size} leaves {size - val_count} training and "
                f"{val_count} validation images out of {size}; both must be at least 1."
            )
        order = torch.randperm(size, generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        return sorted(order[val_count:]), sorted(order[:val_count])

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and self.train_set is None:
            full_train = self.load_split(train=True)
            train_indices, val_indices = self.split_indices(len(full_train))
            self.train_set = TransformedSubset(full_train, train_indices, self.train_transform())
            self.val_set = TransformedSubset(full_train, val_indices, self.eval_transform())
        if stage in (None, "test", "predict") and self.test_set is None:
            test = self.load_split(train=False)
            self.test_set = TransformedSubset(test, range(len(test)), self.eval_transform())

    def state_dict(self) -> dict[str, Any]:
        return {
            "shuffle_generator": self.shuffle_generator.get_state(),
            "preprocessing": self.preprocessing().as_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.shuffle_generator.set_state(state_dict["shuffle_generator"])

    def _loader(self, dataset: Dataset | None, *, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}: setup() has not built this split yet.")
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            # evaluation loaders get a throwaway generator so they never advance the global random stream
            generator=self.shuffle_generator if train else torch.Generator(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)
