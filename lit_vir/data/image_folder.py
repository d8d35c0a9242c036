"""Your own images, in torchvision's `ImageFolder` layout: one folder per class.

    root/                          root/
      cat/  a.png  b.jpg ...         train/  cat/ ...  dog/ ...
      dog/  c.jpeg ...               val/    cat/ ...  dog/ ...    optional: else taken off train/ by val_size
                                     test/   cat/ ...  dog/ ...    optional: else taken off train/ by test_size

A class is a folder directly below `root` (or below `train/`), named for it; its images may lie anywhere below
that folder. An image is any file with an extension Pillow reads (`lit_vir.data.images.IMAGE_EXTENSIONS`); other
files are left out and counted in the log, hidden files and folders (a leading ".") are not looked at. Classes are
numbered in sorted order of their names, as torchvision's `ImageFolder` does. `predict_root` names a folder of
images to predict (any layout; an image in a folder named for a class is labelled with it, so the predictions
get an accuracy). Shapes, statistics, checks and splitting: `lit_vir.data.encoded`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lit_vir.checks import ConfigError
from lit_vir.data.encoded import EncodedImageDataModule
from lit_vir.data.files import DatasetError
from lit_vir.data.images import IMAGE_EXTENSIONS, ImageFiles, ImageSource

__all__ = ["ImageFolderDataModule"]

log = logging.getLogger("lit_vir")

SPLIT_FOLDERS = ("train", "val", "test")
LAYOUT = (
    "Expected root/<class>/<images> (one folder per class), or root/train/<class>/<images> with optional "
    "root/val/ and root/test/ of the same classes."
)


def visible_files(folder: Path) -> list[Path]:
    """Every file below `folder` (symbolic links followed), sorted, hidden files and folders left out."""
    found = []
    for parent, folders, files in os.walk(folder, followlinks=True):
        folders[:] = [name for name in folders if not name.startswith(".")]
        found += [Path(parent) / name for name in files if not name.startswith(".")]
    return sorted(found)


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def report_ignored(ignored: list[Path], owner: str) -> None:
    if ignored:
        shown = ", ".join(map(str, ignored[:5])) + (", ..." if len(ignored) > 5 else "")
        log.info("%s: left out %d files that are not images by their extension: %s", owner, len(ignored), shown)


def subfolders(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))


class ImageFolderDataModule(EncodedImageDataModule):
    """Images in class folders (`root/<class>/...`, or `root/train|val|test/<class>/...`), of any size and format
    Pillow reads, resized to `image_size` and converted to `in_channels`."""

    def __init__(
        self,
        root: str | None = None,
        *,
        predict_root: str | None = None,
        classes: list[str] | None = None,
        **kwargs,
    ) -> None:
        """
        Args:
            root: the folder of class folders, or of train/ (val/, test/) folders of class folders.
            predict_root: a folder of images for `lit-vir predict` (any layout, sizes and formats); without it,
                predict reads the test split.
            classes: the class names when there is no `root` (predicting from a checkpoint, which has them);
                with a `root`, they must be its class folders' names.
            **kwargs: `EncodedImageDataModule`'s (image_size, in_channels, mean, std, resize, test_size,
                skip_bad_images, max_image_pixels) and `ImageDataModule`'s (batch_size, num_workers, val_size, ...).
        """
        owner = type(self).__name__
        if root is None and predict_root is None:
            raise ConfigError(f"{owner}: give root (a folder of class folders) or predict_root (images to predict).")
        if root is None and classes is None:
            raise ConfigError(
                f"{owner}: predict_root without root needs classes (the names of the model's classes, in order); "
                "`lit-vir predict --ckpt_path` takes them from the checkpoint."
            )
        self.image_root = None if root is None else Path(root)
        self.predict_root = None if predict_root is None else Path(predict_root)
        self.given_classes = None if classes is None else [str(name) for name in classes]
        super().__init__(root=root or "", **kwargs)

    def find_splits(self) -> tuple[list[str], dict[str, ImageSource]]:
        owner = type(self).__name__
        given: dict[str, ImageSource] = {}
        names = self.given_classes
        if self.image_root is not None:
            folders = self.split_folders()
            names = [folder.name for folder in subfolders(folders["train"])]
            if self.given_classes is not None and self.given_classes != names:
                raise DatasetError(
                    f"{owner}: classes = {self.given_classes}, but the class folders of {folders['train']} are "
                    f"{names}. Leave classes out (they come from the folders) or rename the folders."
                )
            for split, folder in folders.items():
                given[split] = self.class_images(folder, split, names)
        if self.predict_root is not None:
            given["predict"] = self.prediction_images(names)
        return names, given

    def split_folders(self) -> dict[str, Path]:
        """train (and val, test where present) → its folder of class folders; errors for a layout that is neither."""
        owner, root = type(self).__name__, self.image_root
        if not root.exists():
            raise DatasetError(f"{owner}: root = '{root}' does not exist ({root.absolute()}). {LAYOUT}")
        if not root.is_dir():
            raise DatasetError(f"{owner}: root = '{root}' is a file, not a folder. {LAYOUT}")
        found = {folder.name: folder for folder in subfolders(root)}
        if "train" not in found:
            return {"train": root}
        others = sorted(set(found) - set(SPLIT_FOLDERS))
        if others:
            raise DatasetError(
                f"{owner}: {root} holds train/ and also {', '.join(f'{name}/' for name in others)}: is it a folder of "
                f"splits or of classes? Move the class folders into train/ (and val/, test/). {LAYOUT}"
            )
        return {split: found[split] for split in SPLIT_FOLDERS if split in found}

    def class_images(self, folder: Path, split: str, names: list[str]) -> ImageFiles:
        """The images of one split folder, labelled by their class folder; every class present, none empty."""
        owner = type(self).__name__
        loose = [path for path in folder.iterdir() if path.is_file() and is_image(path)]
        if loose:
            raise DatasetError(
                f"{owner}: {len(loose)} images lie directly in {folder} (e.g. {loose[0].name}), outside any class "
                f"folder. Put each image in a folder named for its class. {LAYOUT}"
            )
        present = [path.name for path in subfolders(folder)]
        if not present:
            raise DatasetError(f"{owner}: {folder} has no class folders (it is empty). {LAYOUT}")
        if present != names:
            only_here, missing = sorted(set(present) - set(names)), sorted(set(names) - set(present))
            raise DatasetError(
                f"{owner}: the classes of {folder} are not those of the training folder: "
                + "; ".join(
                    part
                    for part in (
                        f"{', '.join(map(repr, only_here))} only in {split}/" if only_here else "",
                        f"{', '.join(map(repr, missing))} missing from {split}/" if missing else "",
                    )
                    if part
                )
                + f". Every split needs the same class folders; or remove {folder} to have {split} taken off the "
                "training images."
            )
        paths, labels, ignored = [], [], []
        for label, name in enumerate(names):
            files = visible_files(folder / name)
            images = [path for path in files if is_image(path)]
            ignored += [path for path in files if not is_image(path)]
            if not images:
                found = f"only {len(files)} other files, e.g. {files[0].name}" if files else "nothing"
                raise DatasetError(
                    f"{owner}: the class folder {folder / name} holds no images ({found}). Add images of class "
                    f"'{name}' (any format Pillow reads: .png, .jpg, ...) or remove the folder."
                )
            paths += images
            labels += [label] * len(images)
        report_ignored(ignored, owner)
        return ImageFiles(paths, labels, self.decoder)

    def prediction_images(self, names: list[str]) -> ImageFiles:
        """Every image below `predict_root`; one in a folder named for a class (directly below) is labelled."""
        owner, root = type(self).__name__, self.predict_root
        if not root.is_dir():
            raise DatasetError(f"{owner}: predict_root = '{root}' is not a folder ({root.absolute()}).")
        files = visible_files(root)
        images = [path for path in files if is_image(path)]
        if not images:
            raise DatasetError(f"{owner}: predict_root = '{root}' holds no images ({len(files)} other files).")
        report_ignored([path for path in files if not is_image(path)], owner)
        index = {name: label for label, name in enumerate(names)}
        labels = [index.get(path.relative_to(root).parts[0], -1) if path.parent != root else -1 for path in images]
        return ImageFiles(images, labels, self.decoder)

    def missing_split_hint(self, name: str) -> str:
        return (
            f"there is no {self.image_root}/{name}/ folder and {name}_size = 0; add one, set {name}_size, or "
            "give predict_root (for predict)."
        )
