"""LightningDataModules for the image datasets ViR is evaluated on."""

from lit_vir.data.base import ImageDataModule
from lit_vir.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from lit_vir.data.cifar10c import CIFAR10CDataModule, CIFAR100CDataModule
from lit_vir.data.corrupted import CorruptedDataModule, CorruptionBenchmarkDataModule
from lit_vir.data.corruptions import BENCHMARK_CORRUPTIONS, CORRUPTIONS, EXTRA_CORRUPTIONS, corrupt
from lit_vir.data.digits import DigitsDataModule
from lit_vir.data.files import CorruptDatasetFile, DatasetError, DatasetFilesMissing
from lit_vir.data.huggingface import HuggingFaceDataModule
from lit_vir.data.image_folder import ImageFolderDataModule
from lit_vir.data.mnist import FashionMNISTDataModule, MNISTDataModule

__all__ = [
    "BENCHMARK_CORRUPTIONS",
    "CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "CIFAR10CDataModule",
    "CIFAR10DataModule",
    "CIFAR100CDataModule",
    "CIFAR100DataModule",
    "CorruptDatasetFile",
    "CorruptedDataModule",
    "CorruptionBenchmarkDataModule",
    "DatasetError",
    "DatasetFilesMissing",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "HuggingFaceDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "corrupt",
]
