"""Encoded images (files, or bytes from a dataset) → checked, converted, resized float tensors.

One `Decoder` serves training, the check before training and prediction, so an image is read the same way
everywhere: opened by Pillow (any format it reads: PNG, JPEG, GIF, BMP, TIFF, WebP, ...), its size checked
against `max_image_pixels` before a pixel is decoded (a decompression bomb — a small file that inflates to
gigabytes — is refused from its header), decoded in full (a truncated file fails here, not in a later epoch),
turned upright by its EXIF orientation, converted to the model's channels (grey, RGB, RGBA; palettes and
16-bit grey included) and brought to `image_size`×`image_size`:

    center   the shorter side scaled to image_size (bilinear), then the centre square cut out (torchvision's
             Resize + CenterCrop, timm's "center" crop mode)
    squash   both sides scaled to image_size, the aspect ratio not kept (timm's "squash")

`check_images` runs the decoder over a whole split in loader workers before training, collecting every file
that cannot be used and, in the same pass, the per-channel pixel sums that give the training split's mean and
standard deviation. `Preprocessing` is what a trained model needs to read a new image the way it was trained:
it is saved in checkpoints and exported models.
"""

from __future__ import annotations

import logging
import warnings
import zlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from rich.console import Console
from rich.progress import Progress
from torch.utils.data import DataLoader, Dataset

from lit_vir.data.files import DatasetError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "PIL_PIXEL_LIMIT",
    "Decoder",
    "ImageCheck",
    "ImageFiles",
    "ImageProblem",
    "ImageSource",
    "Preprocessing",
    "Resize",
    "check_images",
    "refuse_or_skip",
]

log = logging.getLogger("lit_vir")

Resize = Literal["center", "squash"]
CHANNEL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
# Pillow's own guard: it warns above MAX_IMAGE_PIXELS and refuses twice that in `Image.open`, before our check.
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS  # 89,478,485 px (a 9459×9459 image): the default limit
PIL_PIXEL_LIMIT = 2 * Image.MAX_IMAGE_PIXELS
# Formats Pillow only identifies (stubs) or reads through an external program: not images it can decode alone.
UNDECODABLE_FORMATS = {"BUFR", "GRIB", "HDF5", "EPS", "MPEG", "WMF"}
HIGH_BIT_GREY = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0}
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError)
CHECK_BATCH = 32  # images per check item sent back from a worker


def _decodable_extensions() -> frozenset[str]:
    Image.init()
    return frozenset(
        extension
        for extension, image_format in Image.registered_extensions().items()
        if image_format in Image.OPEN and image_format not in UNDECODABLE_FORMATS
    )


IMAGE_EXTENSIONS = _decodable_extensions()  # '.png', '.jpg', '.jpeg', '.gif', '.bmp', '.tif', '.webp', ...


class ImageProblem(Exception):
    """Why one image cannot be used (not an image, truncated, too large); the caller adds the path."""


@dataclass(frozen=True)
class Decoder:
    """Encoded image → float tensor (C, H, W) in [0, 1] of `in_channels` × `image_size` × `image_size`."""

    image_size: int
    in_channels: int
    resize: Resize = "center"
    max_image_pixels: int = MAX_IMAGE_PIXELS

    def __call__(self, encoded: str | Path | BinaryIO) -> torch.Tensor:
        image = self.open(encoded)
        return self.to_tensor(self.fit(self.convert(ImageOps.exif_transpose(image))))

    def open(self, encoded: str | Path | BinaryIO) -> Image.Image:
        """Open, check the size in the header, decode every pixel (the file is closed again); raise ImageProblem
        with the reason."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit is checked below
                image = Image.open(encoded)
        except UnidentifiedImageError:
            raise ImageProblem("not an image Pillow can read (unknown format or damaged header)") from None
        except Image.DecompressionBombError as error:
            raise ImageProblem(self.too_large(str(error))) from None
        except DECODE_ERRORS as error:
            raise ImageProblem(self.damaged(error)) from None
        with image:
            width, height = image.size
            if width * height > self.max_image_pixels:
                raise ImageProblem(self.too_large(f"{width}×{height} = {width * height:,} pixels"))
            try:
                image.load()
            except DECODE_ERRORS as error:
                raise ImageProblem(self.damaged(error)) from None
        return image

    @staticmethod
    def damaged(error: Exception) -> str:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        return f"cannot be decoded, the file is truncated or damaged ({detail})"

    def too_large(self, found: str) -> str:
        return (
            f"too large to decode safely: {found}, above max_image_pixels = {self.max_image_pixels:,} (a "
            "decompression bomb would fill the memory); shrink the image, or raise max_image_pixels if it is real "
            f"(at most {PIL_PIXEL_LIMIT:,}, Pillow's own limit)"
        )

    def convert(self, image: Image.Image) -> Image.Image:
        """The model's channels: 16-bit grey to float grey ("F", scaled to [0, 1]); a palette with a transparent
        colour through RGBA; everything else by Pillow's conversion (RGBA → RGB drops alpha, RGB → L is
        ITU-R 601-2 luma)."""
        if image.mode in HIGH_BIT_GREY:
            scaled = np.asarray(image, dtype=np.float32) / HIGH_BIT_GREY[image.mode]
            return Image.fromarray(np.clip(scaled, 0.0, 1.0), mode="F")
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        return image.convert(CHANNEL_MODES[self.in_channels])

    def fit(self, image: Image.Image) -> Image.Image:
        """`image_size` × `image_size` by `resize` (bilinear, antialiased by Pillow); an image already that size is
        left as it is."""
        size, (width, height) = self.image_size, image.size
        if (width, height) == (size, size):
            return image
        if self.resize == "squash":
            return image.resize((size, size), Image.Resampling.BILINEAR)
        scale = size / min(width, height)
        new_width, new_height = max(size, round(width * scale)), max(size, round(height * scale))
        image = image.resize((new_width, new_height), Image.Resampling.BILINEAR)
        left, top = (new_width - size) // 2, (new_height - size) // 2
        return image.crop((left, top, left + size, top + size))

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        array = np.array(image, dtype=np.float32)  # a copy: Pillow's buffer is read-only
        if image.mode != "F":
            array = array / 255.0
        tensor = torch.from_numpy(array)
        tensor = tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)  # (C, H, W)
        return tensor.expand(self.in_channels, -1, -1).contiguous() if len(tensor) == 1 else tensor


class ImageSource(Dataset, ABC):
    """Labelled encoded images: item i is (decoded image (C, H, W) in [0, 1], label), `source(i)` names it."""

    def __init__(self, labels: Sequence[int], decoder: Decoder) -> None:
        self.labels = list(labels)
        self.decoder = decoder

    @abstractmethod
    def encoded(self, index: int) -> str | Path | BinaryIO:
        """What Pillow opens for image `index`: a path or a byte stream."""

    @abstractmethod
    def source(self, index: int) -> str:
        """Where image `index` comes from, for messages and prediction files (a path, `split[index]`)."""

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.decode(index), self.labels[index]

    def decode(self, index: int) -> torch.Tensor:
        try:
            return self.decoder(self.encoded(index))
        except ImageProblem as problem:
            raise DatasetError(f"{self.source(index)}: {problem}.") from None


class ImageFiles(ImageSource):
    """Image files on disk, one label each (-1: unknown)."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], decoder: Decoder) -> None:
        super().__init__(labels, decoder)
        self.paths = [Path(path) for path in paths]

    def encoded(self, index: int) -> Path:
        return self.paths[index]

    def source(self, index: int) -> str:
        return str(self.paths[index])


@dataclass(frozen=True)
class Preprocessing:
    """How a model's input images were made: what a checkpoint or an exported model needs to read a new image
    as in training (plain data, so it is stored without pickled code)."""

    image_size: int
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    resize: Resize = "center"

    def as_dict(self) -> dict[str, Any]:
        return {name: list(value) if isinstance(value, tuple) else value for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Preprocessing:
        return cls(
            image_size=int(values["image_size"]),
            in_channels=int(values["in_channels"]),
            mean=tuple(float(value) for value in values["mean"]),
            std=tuple(float(value) for value in values["std"]),
            class_names=tuple(str(name) for name in values["class_names"]),
            resize=values.get("resize", "center"),
        )


@dataclass
class CheckResult:
    """What `check_images` found: the usable indices, the others with their problem, and the pixel moments of
    the usable ones (float64 sums per channel over every pixel)."""

    usable: list[int]
    problems: list[tuple[str, str]]
    pixel_sum: torch.Tensor  # (C,)
    pixel_square_sum: torch.Tensor  # (C,)
    pixel_count: int

    def mean_and_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and (population) standard deviation over every pixel of the usable images."""
        mean = self.pixel_sum / self.pixel_count
        variance = (self.pixel_square_sum / self.pixel_count - mean.square()).clamp(min=0.0)
        return tuple(mean.tolist()), tuple(variance.sqrt().tolist())


class ImageCheck(Dataset):
    """Chunks of a source, each decoded in a loader worker into (index, problem or None, pixel sums)."""

    def __init__(self, source: ImageSource, indices: Sequence[int]) -> None:
        self.source = source
        self.chunks = [list(indices[start : start + CHECK_BATCH]) for start in range(0, len(indices), CHECK_BATCH)]

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, chunk: int) -> list[tuple[int, str | None, torch.Tensor | None, torch.Tensor | None]]:
        results = []
        for index in self.chunks[chunk]:
            try:
                image = self.source.decoder(self.source.encoded(index)).double()  # (C, H, W)
            except ImageProblem as problem:
                results.append((index, str(problem), None, None))
                continue
            results.append((index, None, image.sum(dim=(1, 2)), image.square().sum(dim=(1, 2))))
        return results


def _as_is(chunk: list) -> list:
    return chunk


def check_images(source: ImageSource, indices: Sequence[int], split: str, num_workers: int) -> CheckResult:
    """Decode the images of `source` at `indices` once (in `num_workers` loader workers), in order; a Rich
    progress bar on a terminal. Nothing is raised here: the caller decides what the problems mean."""
    channels, size = source.decoder.in_channels, source.decoder.image_size
    result = CheckResult(
        [], [], torch.zeros(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64), 0
    )
    chunks = ImageCheck(source, indices)
    loader = DataLoader(chunks, batch_size=None, num_workers=num_workers, collate_fn=_as_is)
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"checking the {split} images", total=len(indices))
        for chunk in loader:
            for index, problem, pixel_sum, square_sum in chunk:
                if problem is not None:
                    result.problems.append((source.source(index), problem))
                    continue
                result.usable.append(index)
                result.pixel_sum += pixel_sum
                result.pixel_square_sum += square_sum
                result.pixel_count += size * size
            progress.advance(task, len(chunk))
    return result


def refuse_or_skip(result: CheckResult, split: str, total: int, skip: bool, owner: str) -> None:
    """Raise DatasetError naming the unusable images (at most 10 listed), or, with `skip`, log how many were left
    out and which."""
    if not result.problems:
        return
    count = len(result.problems)
    listed = "\n".join(f"  {path}: {problem}" for path, problem in result.problems[:10])
    more = f"\n  ... and {count - 10} more" if count > 10 else ""
    if not skip:
        raise DatasetError(
            f"{owner}: {count} of the {total} {split} images cannot be used:\n{listed}{more}\n"
            "Replace or remove them, or set skip_bad_images: true to train without them (they are then counted "
            "in the log)."
        )
    log.warning(
        "%s: skipped %d of the %d %s images that cannot be used:\n%s%s", owner, count, total, split, listed, more
    )
