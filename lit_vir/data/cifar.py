"""CIFAR-10 and CIFAR-100 (32×32 RGB) in torchvision's pickle layout (`<root>/cifar-10-batches-py/`).

torchvision verifies MD5 sums of the published files. `verify_checksums=false` accepts other files in
the same format (generated test data, re-packed copies) and checks their shapes instead.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2

from lit_vir.data.base import ImageDataModule
from lit_vir.data.files import CorruptDatasetFile, DatasetFilesMissing, missing_files

__all__ = ["CIFAR10DataModule", "CIFAR100DataModule"]


def _without_checksums(dataset_class: type[datasets.CIFAR10]) -> type[datasets.CIFAR10]:
    """The same dataset class with its MD5 sums dropped: torchvision then checks that files exist."""
    return type(
        f"Unverified{dataset_class.__name__}",
        (dataset_class,),
        {
            "train_list": [[name, None] for name, _ in dataset_class.train_list],
            "test_list": [[name, None] for name, _ in dataset_class.test_list],
            "meta": {**dataset_class.meta, "md5": None},
        },
    )


class _CifarDataModule(ImageDataModule):
    dataset_class: type[datasets.CIFAR10]
    image_size = 32
    in_channels = 3

    def __init__(self, *args, verify_checksums: bool = True, augment: bool = True, **kwargs) -> None:
        """
        Args:
            verify_checksums: check the published MD5 sums (off: check shapes only, for other copies).
            augment: the reference augmentation, RandomCrop(32, padding 4) + horizontal flip.
        """
        super().__init__(*args, augment=augment, **kwargs)
        self.verify_checksums = verify_checksums

    @property
    def folder(self) -> Path:
        return Path(self.root) / self.dataset_class.base_folder

    @property
    def files(self) -> list[str]:
        listed = self.dataset_class.train_list + self.dataset_class.test_list
        return [name for name, _ in listed] + [self.dataset_class.meta["filename"]]

    def _dataset_class(self) -> type[datasets.CIFAR10]:
        return self.dataset_class if self.verify_checksums else _without_checksums(self.dataset_class)

    def prepare_data(self) -> None:
        missing = missing_files(self.folder, self.files)
        if not missing:
            return
        if not self.download:
            raise DatasetFilesMissing(self.dataset_class.__name__, self.folder, missing, reason="download is off")
        try:
            self._dataset_class()(self.root, download=True)
        except Exception as error:
            raise DatasetFilesMissing(
                self.dataset_class.__name__,
                self.folder,
                missing_files(self.folder, self.files),
                reason=f"{type(error).__name__}: {error}",
            ) from error

    def load_split(self, train: bool) -> Dataset:
        missing = missing_files(self.folder, self.files)
        if missing:
            raise DatasetFilesMissing(
                self.dataset_class.__name__,
                self.folder,
                missing,
                reason="prepare_data() has not run, or could not fetch them",
            )
        try:
            dataset = self._dataset_class()(self.root, train=train, download=False)
        except RuntimeError as error:  # torchvision's checksum failure
            raise CorruptDatasetFile(
                self.folder, f"{error} (set `verify_checksums: false` to accept files that are not the published ones)"
            ) from error
        except (ValueError, pickle.UnpicklingError, EOFError, KeyError) as error:
            raise CorruptDatasetFile(self.folder, f"cannot be read as CIFAR batches ({error})") from error
        if len(dataset.data) != len(dataset.targets):
            raise CorruptDatasetFile(self.folder, f"{len(dataset.data)} images but {len(dataset.targets)} labels")
        if max(dataset.targets, default=0) >= self.num_classes:
            raise CorruptDatasetFile(
                self.folder, f"labels reach {max(dataset.targets)}, but there are {self.num_classes} classes"
            )
        return dataset

    def augmentation(self) -> list[v2.Transform]:
        return [v2.RandomCrop(self.image_size, padding=4), v2.RandomHorizontalFlip()]


class CIFAR10DataModule(_CifarDataModule):
    """CIFAR-10, normalised with ImageNet's mean and std as the reference does."""

    dataset_class = datasets.CIFAR10
    num_classes = 10
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)


class CIFAR100DataModule(_CifarDataModule):
    """CIFAR-100 (fine labels), normalised with mean 0.5 and std 0.5 as the reference does."""

    dataset_class = datasets.CIFAR100
    num_classes = 100
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
