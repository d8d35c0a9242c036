"""LightningDataModules for the image datasets ViR is evaluated on."""

from lit_vir.data.base import ImageDataModule
from lit_vir.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from lit_vir.data.digits import DigitsDataModule
from lit_vir.data.files import CorruptDatasetFile, DatasetFilesMissing
from lit_vir.data.mnist import FashionMNISTDataModule, MNISTDataModule

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "CorruptDatasetFile",
    "DatasetFilesMissing",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "MNISTDataModule",
]
