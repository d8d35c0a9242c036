"""Small datasets written in the exact on-disk formats torchvision reads (MNIST IDX, CIFAR pickles).

MNIST and CIFAR cannot be downloaded in CI, so the loaders are tested on files made here. Images
carry a class-dependent brightness so that a model can learn them.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def labelled_images(count: int, shape: tuple[int, ...], classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images whose mean brightness encodes the label, plus noise; labels cycle through classes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % classes
    rng.shuffle(labels)
    base = (labels * (200 // max(1, classes - 1))).reshape(-1, *([1] * len(shape)))
    noise = rng.integers(0, 56, size=(count, *shape))
    return (base + noise).astype(np.uint8), labels.astype(np.uint8)


def write_idx(path: Path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file: magic 0x00000803 (or 01 for labels), big-endian sizes, raw bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST", train: int = 300, test: int = 100, seed: int = 0) -> Path:
    """`<root>/<folder>/raw/` with the four uncompressed IDX files torchvision's MNIST reads."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        images, labels = labelled_images(count, (28, 28), 10, seed + (prefix == "t10k"))
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return raw


def write_cifar10(root: Path, per_batch: int = 40, test: int = 50, seed: int = 0) -> Path:
    """`<root>/cifar-10-batches-py/` with 5 training batches, the test batch and batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]
    for offset, name in enumerate(names):
        count = test if name == "test_batch" else per_batch
        images, labels = labelled_images(count, (3, 32, 32), 10, seed + offset)
        entry = {"batch_label": name, "data": images.reshape(count, -1), "labels": labels.tolist()}
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {"label_names": [f"class{index}" for index in range(10)], "num_cases_per_batch": per_batch}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return folder


def write_cifar100(root: Path, train: int = 200, test: int = 100, seed: int = 0) -> Path:
    """`<root>/cifar-100-python/` with train, test and meta (fine and coarse labels)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for offset, (name, count) in enumerate((("train", train), ("test", test))):
        images, labels = labelled_images(count, (3, 32, 32), 100, seed + offset)
        entry = {
            "data": images.reshape(count, -1),
            "fine_labels": labels.tolist(),
            "coarse_labels": (labels // 5).tolist(),
        }
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {
        "fine_label_names": [f"fine{index}" for index in range(100)],
        "coarse_label_names": [f"coarse{index}" for index in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return folder


# (extension, Pillow mode, (width, height)): the sizes and modes of a folder of "your own images".
IMAGE_KINDS = [
    ("png", "RGB", (12, 12)),
    ("jpg", "L", (20, 16)),
    ("png", "RGBA", (9, 14)),
    ("png", "P", (16, 16)),
    ("jpeg", "RGB", (31, 8)),
    ("png", "L", (8, 8)),
]


def write_image(path: Path, mode: str, size: tuple[int, int], level: int, seed: int) -> Path:
    """An image file in `mode` whose pixels are `level` plus noise, in the format of `path`'s extension."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    channels = {"L": 1, "P": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = np.clip(level + rng.integers(0, 40, size=(height, width, channels)), 0, 255).astype(np.uint8)
    if mode == "P":
        image = Image.fromarray(pixels[..., 0], mode="L").convert("P")
    else:
        image = Image.fromarray(pixels if channels > 1 else pixels[..., 0], mode=mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_class_folders(folder: Path, counts: dict[str, int], seed: int = 0) -> list[Path]:
    """`folder/<class>/<n>.<ext>` for `counts[class]` images of each class, cycling through IMAGE_KINDS; class k's
    images have brightness 40 + 160·k/(classes − 1), so a model can tell the classes apart."""
    paths = []
    classes = sorted(counts)
    for label, name in enumerate(classes):
        level = 40 + (160 * label) // max(1, len(classes) - 1)
        for number in range(counts[name]):
            extension, mode, size = IMAGE_KINDS[(number + label) % len(IMAGE_KINDS)]
            path = folder / name / f"{number:03d}.{extension}"
            paths.append(write_image(path, mode, size, level, seed + 1000 * label + number))
    return paths


def write_hf_dataset(
    folder: Path, counts: dict[str, dict[str, int]], string_labels: bool = False, truncated: int | None = None
) -> Path:
    """A `datasets.DatasetDict` saved by `save_to_disk`: per split, `counts[split][class]` images (PNG and JPEG bytes
    of IMAGE_KINDS' sizes and modes) in an Image column "img" and a "label" column — ClassLabel, or the class
    names as plain strings. Class k's pixels are 40 + 160·k/(classes − 1) plus noise, as in `write_class_folders`.
    `truncated`: the training image of that index is cut to half its bytes."""
    import datasets

    datasets.disable_progress_bars()
    classes = sorted({name for split in counts.values() for name in split})
    label_type = datasets.Value("string") if string_labels else datasets.ClassLabel(names=classes)
    features = datasets.Features({"img": datasets.Image(), "label": label_type})
    splits = {}
    for offset, (split, split_counts) in enumerate(counts.items()):
        images, labels = [], []
        for label, name in enumerate(classes):
            level = 40 + (160 * label) // max(1, len(classes) - 1)
            for number in range(split_counts.get(name, 0)):
                extension, mode, size = IMAGE_KINDS[(number + label) % len(IMAGE_KINDS)]
                path = write_image(
                    folder.parent / f".{folder.name}-images" / f"{split}-{name}-{number}.{extension}",
                    mode,
                    size,
                    level,
                    100 * offset + 10 * label + number,
                )
                images.append({"bytes": path.read_bytes(), "path": None})
                labels.append(name if string_labels else label)
        if split == "train" and truncated is not None:
            whole = images[truncated]["bytes"]
            images[truncated] = {"bytes": whole[: len(whole) // 2], "path": None}
        splits[split] = datasets.Dataset.from_dict({"img": images, "label": labels}, features=features)
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return folder


def reference_pixels(path: Path, size: int, channels: int) -> np.ndarray:
    """(C, size, size) in [0, 1], read with Pillow directly: upright, converted, the shorter side scaled to `size`
    (torchvision's rounding of the longer one), the centre cut out."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(Image.open(path))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    image = image.convert({1: "L", 3: "RGB"}[channels])
    width, height = image.size
    if (width, height) != (size, size):
        short = min(width, height)
        width, height = round(width * size / short), round(height * size / short)
        image = image.resize((width, height), Image.Resampling.BILINEAR)
        left, top = (width - size) // 2, (height - size) // 2
        image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.float64) / 255
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def saved_config(backbone: dict, seed, data: str, trainer: dict) -> dict:
    """The parts of a run's saved config.yaml that `lit-vir compare` and its labels read (built here, so the tests
    need no run, and no docs/, on disk): `backbone` as class_path and init_args, the data module's class name."""
    return {
        "seed_everything": seed,
        "model": {"class_path": "lit_vir.training.ImageClassifier", "init_args": {"backbone": backbone}},
        "data": {"class_path": f"lit_vir.data.{data}", "init_args": {}},
        "trainer": trainer,
    }
