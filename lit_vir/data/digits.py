"""scikit-learn's bundled handwritten digits (1,797 real 8×8 images, 10 classes): no download.

There is no official test split, so a seeded `test_size` is held out first, and the validation
split comes from the rest. Pixel values 0–16 are scaled to [0, 1].
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch.utils.data import Dataset, TensorDataset
from torchvision.transforms import v2

from lit_vir.checks import check_range
from lit_vir.data.base import ImageDataModule

__all__ = ["DigitsDataModule"]


class DigitsDataModule(ImageDataModule):
    """The digits of `sklearn.datasets.load_digits`, as (1, 8, 8) float images."""

    num_classes = 10
    image_size = 8
    in_channels = 1
    mean = (0.3053,)  # over all 1,797 images, after scaling to [0, 1]
    std = (0.3760,)

    def __init__(self, *args, test_size: float = 0.2, **kwargs) -> None:
        """
        Args:
            test_size: the held-out test split, a fraction of all images (seeded by `split_seed`).
        """
        super().__init__(*args, **kwargs)
        check_range(
            type(self).__name__, "test_size", test_size, low=0, high=1, low_inclusive=False, high_inclusive=False
        )
        self.test_size = test_size

    def prepare_data(self) -> None:
        """Nothing to fetch: scikit-learn ships the data."""

    def load_split(self, train: bool) -> Dataset:
        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (n, 1, 8, 8)
        labels = torch.tensor(digits.target, dtype=torch.int64)
        generator = torch.Generator().manual_seed(self.split_seed + 1)
        order = torch.randperm(len(labels), generator=generator)
        test_count = round(self.test_size * len(labels))
        chosen = order[test_count:] if train else order[:test_count]
        return TensorDataset(images[chosen], labels[chosen])

    def pixel_transform(self) -> v2.Transform:
        return v2.ToImage()  # already float in [0, 1]
