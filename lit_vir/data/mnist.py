"""MNIST and Fashion-MNIST (28×28 grey, 10 classes) in torchvision's IDX layout.

Files live in `<root>/<MNIST|FashionMNIST>/raw/`. Before downloading, `prepare_data` unpacks copies
found there as .gz or where system packages install them (Debian's `dataset-fashion-mnist` puts the
real Fashion-MNIST in /usr/share/datasets/fashion-mnist), so both work offline.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2

from lit_vir.data.base import ImageDataModule
from lit_vir.data.files import DatasetFilesMissing, check_idx_file, gather_raw_files, missing_files

__all__ = ["FashionMNISTDataModule", "MNISTDataModule"]

IMAGE_FILES = {True: "train-images-idx3-ubyte", False: "t10k-images-idx3-ubyte"}
LABEL_FILES = {True: "train-labels-idx1-ubyte", False: "t10k-labels-idx1-ubyte"}


class _IdxDataModule(ImageDataModule):
    """A torchvision MNIST-family dataset found on disk, in a system package, or downloaded."""

    dataset_class: type[datasets.MNIST]
    system_folders: tuple[str, ...] = ()
    num_classes = 10
    image_size = 28
    in_channels = 1

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.dataset_class.classes)  # torchvision's: '0 - zero', ...; 'T-shirt/top', 'Trouser', ...

    @property
    def raw_folder(self) -> Path:
        return Path(self.root) / self.dataset_class.__name__ / "raw"

    @property
    def raw_files(self) -> list[str]:
        return [*IMAGE_FILES.values(), *LABEL_FILES.values()]

    def prepare_data(self) -> None:
        searched = [Path(folder) for folder in self.system_folders]
        missing = gather_raw_files(self.raw_folder, self.raw_files, searched)
        if missing and self.download:
            try:
                self.dataset_class(self.root, download=True)
            except Exception as error:
                raise DatasetFilesMissing(
                    self.dataset_class.__name__,
                    self.raw_folder,
                    missing_files(self.raw_folder, missing),
                    searched,
                    reason=f"{type(error).__name__}: {error}".strip(),
                ) from error
        elif missing:
            raise DatasetFilesMissing(
                self.dataset_class.__name__, self.raw_folder, missing, searched, reason="download is off"
            )

    def load_split(self, train: bool) -> Dataset:
        missing = missing_files(self.raw_folder, [IMAGE_FILES[train], LABEL_FILES[train]])
        if missing:
            raise DatasetFilesMissing(
                self.dataset_class.__name__,
                self.raw_folder,
                missing,
                reason="prepare_data() has not run, or could not fetch them",
            )
        images = check_idx_file(self.raw_folder / IMAGE_FILES[train], (self.image_size, self.image_size))
        labels = check_idx_file(self.raw_folder / LABEL_FILES[train], ())
        if images != labels:
            raise ValueError(
                f"{self.raw_folder}: {images} images but {labels} labels in the "
                f"{'training' if train else 'test'} split; the files do not belong together."
            )
        return self.dataset_class(self.root, train=train, download=False)

    def augmentation(self) -> list[v2.Transform]:
        """A small random shift (crop 28 from the image padded by 2): no flips for digits or garments."""
        return [v2.RandomCrop(self.image_size, padding=2)]


class MNISTDataModule(_IdxDataModule):
    """MNIST handwritten digits; normalised with the usual mean 0.1307, std 0.3081."""

    dataset_class = datasets.MNIST
    mean = (0.1307,)
    std = (0.3081,)


class FashionMNISTDataModule(_IdxDataModule):
    """Fashion-MNIST garments (Xiao et al. 2017); mean 0.2860, std 0.3530 of the training set."""

    dataset_class = datasets.FashionMNIST
    system_folders = ("/usr/share/datasets/fashion-mnist",)
    mean = (0.2860,)
    std = (0.3530,)
