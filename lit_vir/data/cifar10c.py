"""CIFAR-10-C and CIFAR-100-C: the published corrupted test sets (Hendrycks & Dietterich, ICLR 2019).

Layout, as published: `<root>/CIFAR-10-C/<corruption>.npy`, uint8 (50000, 32, 32, 3) HWC RGB, rows
(s − 1)·10000 … s·10000 − 1 holding severity s of the 10,000 test images in test-set order, and
`labels.npy`, uint8 (50000,). Files are memory-mapped, so only the images read are loaded. Any row
count N that is a positive multiple of 5 is accepted (N/5 rows per severity): tests use small files in
the same layout. CIFAR-100-C has the same layout under `CIFAR-100-C/`.

The archives are 2.9 GB each, so `download` is off by default; with it on, `prepare_data` fetches and
unpacks the published archive (Zenodo), checking its MD5.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.datasets.utils import download_and_extract_archive
from torchvision.transforms import v2

from lit_vir.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from lit_vir.data.corrupted import CorruptionBenchmarkDataModule
from lit_vir.data.corruptions import SEVERITIES
from lit_vir.data.files import CorruptDatasetFile, DatasetFilesMissing, missing_files

__all__ = ["CIFAR10CDataModule", "CIFAR100CDataModule", "NpyCell"]

LABELS_FILE = "labels.npy"


class NpyCell(Dataset):
    """Rows [start, stop) of a memory-mapped uint8 (N, H, W, C) `.npy` file with their labels. The file
    is opened in the process that reads it (a memory map would be copied whole into worker processes)."""

    def __init__(self, path: Path, start: int, stop: int, labels: torch.Tensor, transform: v2.Transform) -> None:
        self.path = path
        self.start = start
        self.labels = labels
        self.transform = transform
        self.count = stop - start
        self.images: np.ndarray | None = None

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.images is None:
            self.images = np.load(self.path, mmap_mode="r")
        image = np.array(self.images[self.start + index])  # (H, W, C), copied out of the read-only map
        return self.transform(image), int(self.labels[index])


class CIFAR10CDataModule(CorruptionBenchmarkDataModule):
    """The published CIFAR-10-C, one test loader per (corruption, severity) cell (see `cells`), normalised
    like CIFAR10DataModule so a model trained there is tested as it was validated."""

    num_classes = 10
    image_size = 32
    in_channels = 3
    mean = CIFAR10DataModule.mean
    std = CIFAR10DataModule.std
    default_folder = "CIFAR-10-C"
    archive_url = "https://zenodo.org/records/2535967/files/CIFAR-10-C.tar"
    archive_md5 = "56bf5dcef84df0e2308c6dcbcbbd8499"
    clean_class = CIFAR10DataModule

    def __init__(
        self,
        root: str = "data",
        corruptions: Sequence[str] | None = None,
        severities: Sequence[int] = SEVERITIES,
        folder: str | None = None,
        download: bool = False,
        include_clean: bool = False,
        **loader: Any,
    ) -> None:
        """
        Args:
            root: the data root holding the dataset folder.
            corruptions: file names without `.npy`; None: the 15 of the benchmark (the 4 extras are
                published too: speckle_noise, gaussian_blur, spatter, saturate).
            severities: any of 1..5.
            folder: the dataset folder below `root`; None: `CIFAR-10-C` (`CIFAR-100-C` for CIFAR-100-C).
            download: fetch and unpack the published 2.9 GB archive if files are missing.
            include_clean: also test the clean test set (read by `clean_class` from `root`, e.g.
                data/cifar-10-batches-py), as the first cell ("clean", 0).
            loader: the test loaders' settings (`CorruptionBenchmarkDataModule`: batch_size, num_workers, pin_memory).
        """
        super().__init__(corruptions, severities, root=root, download=download, include_clean=include_clean, **loader)
        self.folder = Path(root) / (folder or self.default_folder)

    @property
    def files(self) -> list[str]:
        return [f"{name}.npy" for name in self.corruptions] + [LABELS_FILE]

    def missing(self, reason: str) -> DatasetFilesMissing:
        return DatasetFilesMissing(
            type(self).__name__,
            self.folder,
            missing_files(self.folder, self.files),
            reason=f"{reason}. The published archive is {self.archive_url} (2.9 GB); unpack it into {Path(self.root)}",
        )

    def prepare_data(self) -> None:
        if not missing_files(self.folder, self.files):
            return
        if not self.download:
            raise self.missing("download is off")
        try:
            download_and_extract_archive(self.archive_url, self.folder.parent, md5=self.archive_md5)
        except Exception as error:
            raise self.missing(f"{type(error).__name__}: {error}") from error
        if missing_files(self.folder, self.files):
            raise self.missing(f"the archive did not hold them in {self.folder.name}/")

    def cell_dataset(self, corruption: str, severity: int) -> Dataset:
        if missing_files(self.folder, self.files):
            raise self.missing("prepare_data() has not run, or could not fetch them")
        path = self.folder / f"{corruption}.npy"
        rows = self.check_images(path)
        labels = self.read_labels(rows)
        per_severity = rows // len(SEVERITIES)
        start = (severity - 1) * per_severity
        return NpyCell(path, start, start + per_severity, labels[start : start + per_severity], self.eval_transform())

    def clean_dataset(self) -> Dataset:
        clean = self.clean_class(root=self.root, download=self.download)
        clean.prepare_data()
        clean.setup("test")
        return clean.test_set

    def check_images(self, path: Path) -> int:
        """The row count of a corruption file, after checking it holds uint8 (N, 32, 32, 3) with 5 | N."""
        images = read_npy(path)
        expected = (self.image_size, self.image_size, self.in_channels)
        if images.ndim != 4 or images.shape[1:] != expected or images.dtype != np.uint8:
            raise CorruptDatasetFile(
                path, f"holds {images.dtype} {images.shape}, expected uint8 (N, {', '.join(map(str, expected))})"
            )
        if len(images) == 0 or len(images) % len(SEVERITIES):
            raise CorruptDatasetFile(
                path, f"holds {len(images)} images, not a positive multiple of 5 (one block per severity)"
            )
        return len(images)

    def read_labels(self, rows: int) -> torch.Tensor:
        path = self.folder / LABELS_FILE
        labels = read_npy(path)
        if labels.shape != (rows,):
            raise CorruptDatasetFile(path, f"holds labels of shape {labels.shape}, but the images are {rows} rows")
        if labels.max() >= self.num_classes:
            raise CorruptDatasetFile(path, f"labels reach {labels.max()}, but there are {self.num_classes} classes")
        return torch.from_numpy(np.asarray(labels, dtype=np.int64))


def read_npy(path: Path) -> np.ndarray:
    """A memory-mapped `.npy` array, or CorruptDatasetFile naming the path."""
    try:
        return np.load(path, mmap_mode="r")
    except (ValueError, OSError) as error:
        raise CorruptDatasetFile(path, f"cannot be read as a .npy array ({error})") from error


class CIFAR100CDataModule(CIFAR10CDataModule):
    """The published CIFAR-100-C (fine labels), normalised like CIFAR100DataModule."""

    num_classes = 100
    mean = CIFAR100DataModule.mean
    std = CIFAR100DataModule.std
    default_folder = "CIFAR-100-C"
    archive_url = "https://zenodo.org/records/3555552/files/CIFAR-100-C.tar"
    archive_md5 = "11f0ed0f1191edbf9fa23466ae6021d3"
    clean_class = CIFAR100DataModule
