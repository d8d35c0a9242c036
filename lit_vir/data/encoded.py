"""The shared part of the DataModules whose images must be decoded: a folder of image files, a Hugging Face dataset.

Unlike the built-in datasets, their shape and normalisation are not known in advance: `image_size` and
`in_channels` are set in the config (and linked into the model like every dataset's), every image is brought to
them by `lit_vir.data.images.Decoder`, and the mean and standard deviation are given or computed from the
training split. The life of one:

- `__init__` (every process): the subclass lists the images and their labels (`find_splits`, no pixel read), so
  `num_classes` and the class names are known when the CLI links them into the model. A split without its own
  folder (or dataset split) is taken off the training images, stratified and seeded: test by `test_size` (seed
  `split_seed`), then validation by `val_size` (seed `split_seed + 1`). Layout errors stop the run here.
- `prepare_data` (one process per node, before the trainer writes anything) and `setup(stage)` (every process):
  every image of the stage's splits is decoded once, in `num_workers` loader workers (`check_images`); an image
  that cannot be used stops the run with its path — or, with `skip_bad_images`, is left out and counted in the
  log. Checking the training split also sums its pixels.
- the loaders: images are normalised by the config's `mean`/`std` if given, else by the checkpoint's (a run
  resumed, tested or predicting from a checkpoint reads images as it was trained to), else by the training
  split's, from that one pass. `state_dict` saves them, with the class names, in every checkpoint.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from torch.utils.data import Dataset
from torchvision.transforms import v2

from lit_vir.checks import ConfigError, check_choice, check_range
from lit_vir.data.base import ImageDataModule, TransformedSubset
from lit_vir.data.files import DatasetError
from lit_vir.data.images import (
    CHANNEL_MODES,
    MAX_IMAGE_PIXELS,
    PIL_PIXEL_LIMIT,
    CheckResult,
    Decoder,
    ImageSource,
    Preprocessing,
    Resize,
    check_images,
    refuse_or_skip,
)
from lit_vir.data.splits import stratified_split

__all__ = ["EncodedImageDataModule"]

SPLITS = ("train", "val", "test", "predict")
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}


def check_statistics(owner: str, mean: list[float] | None, std: list[float] | None, channels: int) -> None:
    """Both or neither; one value per channel; every std > 0."""
    if (mean is None) != (std is None):
        raise ConfigError(f"{owner}: give both mean and std, or neither (to compute them from the training images).")
    if mean is None:
        return
    if len(mean) != channels or len(std) != channels:
        raise ConfigError(
            f"{owner}: mean = {list(mean)} and std = {list(std)} need one value per channel (in_channels = {channels})."
        )
    for value in std:
        check_range(owner, "std", value, low=0, low_inclusive=False)


class EncodedImageDataModule(ImageDataModule):
    """Labelled encoded images in train/val/test splits (found or split off), checked before training.

    Subclasses implement `find_splits`: the class names and an `ImageSource` per split they have.
    """

    def __init__(
        self,
        *args,
        image_size: int = 32,
        in_channels: int = 3,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        resize: Resize = "center",
        test_size: float = 0.1,
        skip_bad_images: bool = False,
        max_image_pixels: int = MAX_IMAGE_PIXELS,
        **kwargs,
    ) -> None:
        """
        Args:
            image_size: the side every image is brought to (and the model's `image_size`).
            in_channels: 1 (grey), 3 (RGB) or 4 (RGBA); every image is converted to it.
            mean: per-channel mean for the normalisation; with `std`, or neither: then both come from the training
                split (computed once, saved in the checkpoint).
            std: per-channel standard deviation, > 0.
            resize: "center" (shorter side to image_size, centre crop) or "squash" (both sides, aspect not kept).
            test_size: the test split taken off the training images when there is no test split of its own: a
                fraction in [0, 1) or a count; 0 for none.
            skip_bad_images: leave out images that cannot be decoded (counted in the log) instead of stopping.
            max_image_pixels: refuse an image with more pixels than this before decoding it (a decompression bomb
                can fill the memory); Pillow's default limit, at most twice that.
        """
        owner = type(self).__name__
        check_range(owner, "image_size", image_size, low=1)
        if in_channels not in CHANNEL_MODES:
            raise ConfigError(f"{owner}: in_channels = {in_channels!r} is not one of {sorted(CHANNEL_MODES)}.")
        check_choice(owner, "resize", resize, ("center", "squash"))
        check_range(owner, "test_size", test_size, low=0, hint="Give a fraction in [0, 1), a count, or 0 for none.")
        check_range(owner, "max_image_pixels", max_image_pixels, low=1, high=PIL_PIXEL_LIMIT)
        check_statistics(owner, mean, std, in_channels)
        self.image_size = image_size
        self.in_channels = in_channels
        super().__init__(*args, **kwargs)
        self.decoder = Decoder(image_size, in_channels, resize, max_image_pixels)
        self.resize = resize
        self.test_size = test_size
        self.skip_bad_images = skip_bad_images
        self.given_statistics = None if mean is None else (tuple(mean), tuple(std))
        self.restored_statistics: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        self.checked: dict[str, CheckResult] = {}
        self.predict_set: Dataset | None = None
        names, given = self.find_splits()
        self.names = tuple(names)
        self.num_classes = len(self.names)
        self.splits = self.arrange(given)

    @abstractmethod
    def find_splits(self) -> tuple[list[str], dict[str, ImageSource]]:
        """The class names and an `ImageSource` for each split the data has of its own (of "train", "val",
        "test", "predict"); raise DatasetError for a layout that cannot be used."""

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.names

    def arrange(self, given: dict[str, ImageSource]) -> dict[str, tuple[ImageSource, list[int]]]:
        """Each split as (source, indices): the given ones whole, the missing ones taken off the training split."""
        owner = type(self).__name__
        for split, source in given.items():
            counts = [0] * self.num_classes
            for label in source.labels:
                if label >= 0:
                    counts[label] += 1
            empty = [name for name, count in zip(self.names, counts, strict=True) if count == 0]
            if empty and split != "predict":
                raise DatasetError(
                    f"{owner}: class {', '.join(map(repr, empty[:5]))} has no images in the {split} split (its "
                    f"{len(source)} images are of the other classes). Every class needs images in every split: add "
                    "them, or leave the split out to have it taken off the training images."
                )
        splits = {split: (source, list(range(len(source)))) for split, source in given.items()}
        if "train" not in given:  # prediction only
            return splits
        train, keep = splits["train"]
        for split, amount, seed in (
            ("test", self.test_size, self.split_seed),
            ("val", self.val_size, self.split_seed + 1),
        ):
            if split in given or amount == 0:
                continue
            labels = [train.labels[index] for index in keep]
            kept, taken = stratified_split(
                labels, amount, seed, owner=owner, field=f"{split}_size", class_names=self.names
            )
            splits[split] = (train, [keep[position] for position in taken])
            keep = [keep[position] for position in kept]
        splits["train"] = (train, keep)
        if "predict" not in splits and "test" in splits:
            splits["predict"] = splits["test"]
        return splits

    def split(self, name: str) -> tuple[ImageSource, list[int]]:
        """A split's source and indices; "predict" is the data's own prediction images, else the test split."""
        if name not in self.splits:
            raise DatasetError(f"{type(self).__name__}: there is no {name} split: {self.missing_split_hint(name)}")
        return self.splits[name]

    def missing_split_hint(self, name: str) -> str:
        """What to do about a split the data does not have (the subclass knows its layout)."""
        return f"the data has only {', '.join(self.splits)}."

    def check(self, name: str) -> CheckResult:
        """Decode every image of a split once (cached): refuse or skip those that cannot be used."""
        if name not in self.checked:
            source, indices = self.split(name)
            result = check_images(source, indices, name, self.num_workers)
            refuse_or_skip(result, name, len(indices), self.skip_bad_images, type(self).__name__)
            if not result.usable:
                raise DatasetError(f"{type(self).__name__}: none of the {len(indices)} {name} images can be used.")
            self.checked[name] = result
        return self.checked[name]

    def prepare_data(self) -> None:
        """Check the images of the run's stage before the trainer writes anything (its logger makes the run folder
        before `setup`): a run stopped by a bad file leaves no empty run behind. One process per node runs this."""
        trainer = self.trainer
        self.setup(trainer.state.fn.value if trainer is not None and trainer.state.fn is not None else None)

    def setup(self, stage: str | None = None) -> None:
        """Check the stage's splits (every split for None); checking the training split also sums its pixels.
        Already-checked splits are not decoded again."""
        for name in STAGE_SPLITS.get(stage, tuple(name for name in SPLITS if name in self.splits)):
            self.check(name)

    def statistics(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std): given, else restored from a checkpoint, else the training split's."""
        return self.given_statistics or self.restored_statistics or self.check("train").mean_and_std()

    @property
    def mean(self) -> tuple[float, ...]:
        return self.statistics()[0]

    @property
    def std(self) -> tuple[float, ...]:
        return self.statistics()[1]

    def preprocessing(self) -> Preprocessing:
        mean, std = self.statistics()
        return Preprocessing(self.image_size, self.in_channels, mean, std, self.names, self.resize)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the shuffling and adopt the checkpoint's statistics; refuse data of other classes or shape."""
        super().load_state_dict(state_dict)
        if "preprocessing" not in state_dict:
            return
        saved = Preprocessing.from_dict(state_dict["preprocessing"])
        found = (self.image_size, self.in_channels, self.names)
        if (saved.image_size, saved.in_channels, saved.class_names) != found:
            raise DatasetError(
                f"{type(self).__name__}: the checkpoint was trained on {saved.in_channels}-channel "
                f"{saved.image_size}×{saved.image_size} images of the classes {list(saved.class_names)}; this data "
                f"gives {self.in_channels}-channel {self.image_size}×{self.image_size} images of {list(self.names)}. "
                "Use the data (and image_size, in_channels) it was trained with."
            )
        self.restored_statistics = (saved.mean, saved.std)

    def augmentation(self) -> list[v2.Transform]:
        """A random shift (crop from the image padded by an eighth of its side, mirrored at the border) and a
        horizontal flip — for photographs; leave `augment` off where orientation matters (text, digits)."""
        return [
            v2.RandomCrop(self.image_size, padding=self.image_size // 8, padding_mode="reflect"),
            v2.RandomHorizontalFlip(),
        ]

    def view(self, name: str, transform: v2.Transform) -> TransformedSubset:
        """The split's usable images with `transform`, built when its loader is (the statistics are final then)."""
        source, _ = self.split(name)
        subset = TransformedSubset(source, self.check(name).usable, transform)
        setattr(self, f"{name}_set", subset)
        return subset

    def load_split(self, train: bool) -> Dataset:
        """The training or test split's usable images, decoded (C, H, W) in [0, 1], not normalised."""
        name = "train" if train else "test"
        source, _ = self.split(name)
        return TransformedSubset(source, self.check(name).usable, v2.Identity())

    def train_dataloader(self):
        return self._loader(self.view("train", self.train_transform()), train=True)

    def val_dataloader(self):
        return self._loader(self.view("val", self.eval_transform()), train=False)

    def test_dataloader(self):
        return self._loader(self.view("test", self.eval_transform()), train=False)

    def predict_dataloader(self):
        return self._loader(self.view("predict", self.eval_transform()), train=False)
