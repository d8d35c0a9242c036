"""Finding, unpacking and checking dataset files, with errors that name the paths involved."""

from __future__ import annotations

import gzip
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "CorruptDatasetFile",
    "DatasetError",
    "DatasetFilesMissing",
    "check_idx_file",
    "gather_raw_files",
    "missing_files",
]

IDX_UNSIGNED_BYTE = 0x08


class DatasetFilesMissing(FileNotFoundError):
    """Raised when the raw files of a dataset are neither on disk nor downloadable."""

    def __init__(
        self, dataset: str, folder: Path, files: Sequence[str], searched: Iterable[Path] = (), reason: str = ""
    ):
        folder = Path(folder).absolute()
        lines = [f"{dataset}: these files are missing from {folder}:"]
        lines += [f"  {folder / name}" for name in files]
        searched = [str(place) for place in searched]
        if searched:
            lines.append(f"Also looked for them (or their .gz) in: {', '.join(searched)}.")
        if reason:
            lines.append(f"Download was not possible: {reason}")
        lines.append(
            f"Put the files (or their .gz) in {folder}/ — e.g. copy them from a machine with internet access — "
            "or run once with internet access and `download: true`."
        )
        super().__init__("\n".join(lines))


class DatasetError(ValueError):
    """A dataset on disk that cannot be used as it is (an empty folder, a class missing from a split, files that
    are not images): the message names the paths, what was found and what to do."""


class CorruptDatasetFile(ValueError):
    """Raised when a dataset file exists but cannot be what it claims to be."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}. Delete the file and download it again (or copy an intact one).")


def missing_files(folder: Path, names: Iterable[str]) -> list[str]:
    return [name for name in names if not (folder / name).is_file()]


def gather_raw_files(folder: Path, names: Iterable[str], search: Iterable[Path]) -> list[str]:
    """Fill `folder` with each missing `name` from `name.gz` in `folder` or a copy in a `search` folder.

    Debian's `dataset-fashion-mnist`, for one, installs the real IDX files as .gz under
    /usr/share/datasets; torchvision reads only the uncompressed files in its own folder.
    Returns the names still missing. Writes through a temporary file, so no half-file remains.
    """
    still_missing = []
    for name in names:
        target = folder / name
        if target.is_file():
            continue
        sources = [place / candidate for place in (folder, *search) for candidate in (name, f"{name}.gz")]
        source = next((path for path in sources if path.is_file() and path != target), None)
        if source is None:
            still_missing.append(name)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{name}.partial")
        opener = gzip.open if source.suffix == ".gz" else open
        with opener(source, "rb") as reader, open(partial, "wb") as writer:
            shutil.copyfileobj(reader, writer)
        os.replace(partial, target)
    return still_missing


def check_idx_file(path: Path, item_shape: tuple[int, ...]) -> int:
    """Check an unsigned-byte IDX file's magic number, dimensions and size; return its item count."""
    with open(path, "rb") as handle:
        header = handle.read(4)
        if len(header) < 4 or header[0] != 0 or header[1] != 0 or header[2] != IDX_UNSIGNED_BYTE:
            raise CorruptDatasetFile(
                path,
                f"bad magic number {header.hex() or '(empty file)'}, expected 0000 08 0N (an unsigned-byte IDX file)",
            )
        ndim = header[3]
        dims = [int.from_bytes(handle.read(4), "big") for _ in range(ndim)]
    if ndim != 1 + len(item_shape) or tuple(dims[1:]) != item_shape:
        raise CorruptDatasetFile(path, f"holds items of shape {tuple(dims[1:])}, expected {item_shape}")
    expected = 4 + 4 * ndim + math.prod(dims)
    actual = path.stat().st_size
    if actual != expected:
        raise CorruptDatasetFile(path, f"is {actual} bytes, its header promises {expected}")
    return dims[0]
