"""A Hugging Face `datasets` dataset of labelled images (the optional extra: `pip install -e ".[hf]"`).

    data:
      class_path: lit_vir.data.HuggingFaceDataModule
      init_args:
        dataset: uoft-cs/cifar10      # a name on the Hub, or a folder written by Dataset(Dict).save_to_disk
        image_column: img
        label_column: label

A folder is read by `datasets.load_from_disk` (a single `Dataset` there is the training split); a name by
`datasets.load_dataset`, downloaded once into the Hugging Face cache. The splits `train_split`, `val_split` and
`test_split` are used where the dataset has them; a missing validation or test split is taken off the training
split, stratified, as for an image folder (`lit_vir.data.encoded`: shapes, statistics, checks). The images are
kept encoded (PNG or JPEG bytes, or paths) and decoded by lit_vir's `Decoder` with the same checks as files; an
image is named `split[index]` in messages and prediction files. The labels are a `ClassLabel` column (its names
are the classes) or plain values, strings or integers (their sorted distinct values in the training split are).

Offline: with HF_HUB_OFFLINE=1 (or HF_DATASETS_OFFLINE=1) a name that is not in the local Hugging Face cache is
refused at once; without it, the Hub's address is tried first with a `hub_timeout` (seconds), so a machine
without internet gets a message instead of waiting on retries.
"""

from __future__ import annotations

import io
import os
import socket
import threading
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

from lit_vir.checks import ConfigError, check_range
from lit_vir.data.encoded import EncodedImageDataModule
from lit_vir.data.files import DatasetError
from lit_vir.data.images import Decoder, ImageSource

__all__ = ["HuggingFaceDataModule"]

TRUE_VALUES = {"1", "ON", "YES", "TRUE"}
HUB = "https://huggingface.co"


def datasets_package() -> Any:
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            "HuggingFaceDataModule needs the `datasets` package: pip install -e '.[hf]' (or pip install datasets)."
        ) from None
    return datasets


def offline() -> bool:
    """HF_HUB_OFFLINE or HF_DATASETS_OFFLINE set to a true value (read now, not when `datasets` was imported)."""
    return any(os.environ.get(name, "").upper() in TRUE_VALUES for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_cache() -> Path:
    """Where huggingface_hub keeps downloaded repositories (HF_HUB_CACHE, else HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    return Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub"


def unreachable(endpoint: str, timeout: float) -> str | None:
    """Why `endpoint` (a URL) cannot be reached within `timeout` seconds, or None. The name lookup and connection
    run in a thread, so neither a slow resolver nor a dropped connection can hold the caller longer."""
    address = urlparse(endpoint)
    port = address.port or (443 if address.scheme == "https" else 80)
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((address.hostname, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(f"{type(error).__name__}: {error}")

    attempt = threading.Thread(target=connect, daemon=True)
    attempt.start()
    attempt.join(timeout)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


class HubImages(ImageSource):
    """One split of a `datasets.Dataset`, its image column kept encoded ({"bytes", "path"} per row)."""

    def __init__(self, table: Any, column: str, split: str, labels: list[int], decoder: Decoder) -> None:
        super().__init__(labels, decoder)
        self.table = table
        self.column = column
        self.split = split

    def encoded(self, index: int) -> str | BinaryIO:
        image = self.table[index][self.column]
        return io.BytesIO(image["bytes"]) if image.get("bytes") is not None else image["path"]

    def source(self, index: int) -> str:
        return f"{self.split}[{index}]"


class HuggingFaceDataModule(EncodedImageDataModule):
    """Images and labels from two columns of a Hugging Face dataset, by name or from a `save_to_disk` folder."""

    def __init__(
        self,
        dataset: str,
        *,
        config_name: str | None = None,
        revision: str | None = None,
        image_column: str = "image",
        label_column: str = "label",
        train_split: str = "train",
        val_split: str | None = None,
        test_split: str | None = "test",
        hub_timeout: float = 10.0,
        **kwargs,
    ) -> None:
        """
        Args:
            dataset: a dataset name on the Hub (`owner/name`), or a folder written by `save_to_disk`.
            config_name: the dataset's configuration (subset), for a name with several.
            revision: a branch, tag or commit of the Hub dataset.
            image_column: the column of images (an `Image` feature).
            label_column: the column of labels (`ClassLabel`, strings or integers).
            train_split: the split to train on.
            val_split: the validation split; None (or a split the dataset lacks): taken off the training split.
            test_split: the test split; None (or one the dataset lacks): taken off the training split by test_size.
            hub_timeout: seconds to wait for the Hub before saying it cannot be reached.
            **kwargs: `EncodedImageDataModule`'s (image_size, in_channels, mean, std, ...) and `ImageDataModule`'s.
        """
        check_range(type(self).__name__, "hub_timeout", hub_timeout, low=0, low_inclusive=False)
        self.dataset = dataset
        self.config_name = config_name
        self.revision = revision
        self.image_column = image_column
        self.label_column = label_column
        self.split_names = {"train": train_split, "val": val_split, "test": test_split}
        self.hub_timeout = hub_timeout
        super().__init__(**kwargs)

    def load(self) -> Any:
        """The dataset as a `DatasetDict` (a saved single `Dataset` becomes its training split)."""
        datasets = datasets_package()
        owner = type(self).__name__
        if Path(self.dataset).is_dir():
            try:
                loaded = datasets.load_from_disk(self.dataset)
            except FileNotFoundError as error:
                raise DatasetError(
                    f"{owner}: dataset = '{self.dataset}' is a folder but not one written by save_to_disk ({error})."
                ) from None
            return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
        self.check_hub()
        try:
            return datasets.load_dataset(self.dataset, self.config_name, revision=self.revision)
        except (datasets.exceptions.DatasetNotFoundError, FileNotFoundError) as error:
            raise DatasetError(
                f"{owner}: dataset = '{self.dataset}' is neither a folder nor a dataset on the Hub "
                f"({str(error).splitlines()[0]}). Check the name, or give the folder written by save_to_disk."
            ) from None
        except (ConnectionError, OSError) as error:
            raise DatasetError(
                f"{owner}: could not download '{self.dataset}': {error}. {self.offline_hint()}"
            ) from None

    def check_hub(self) -> None:
        """Refuse at once what would otherwise wait on the network: offline and not cached, or no Hub to reach."""
        owner = type(self).__name__
        cached = (hub_cache() / f"datasets--{self.dataset.replace('/', '--')}").is_dir()
        if offline() and not cached:
            raise DatasetError(
                f"{owner}: dataset = '{self.dataset}' is not a folder, and offline (HF_HUB_OFFLINE or "
                f"HF_DATASETS_OFFLINE is set) it is not in the Hugging Face cache ({hub_cache()}). "
                + self.offline_hint()
            )
        endpoint = os.environ.get("HF_ENDPOINT", HUB)
        problem = None if offline() else unreachable(endpoint, self.hub_timeout)
        if problem is not None:
            cache = " It is in the local cache: set HF_HUB_OFFLINE=1 to use that copy." if cached else ""
            raise DatasetError(
                f"{owner}: dataset = '{self.dataset}' is not a folder, and the Hub ({endpoint}) cannot be reached: "
                f"{problem}.{cache} {self.offline_hint()}"
            )

    def offline_hint(self) -> str:
        return (
            "On a machine with internet: `datasets.load_dataset('"
            f"{self.dataset}').save_to_disk('FOLDER')`, copy FOLDER here and set dataset: FOLDER."
        )

    def find_splits(self) -> tuple[list[str], dict[str, ImageSource]]:
        owner = type(self).__name__
        datasets = datasets_package()
        loaded = self.load()
        present = list(loaded)
        if self.split_names["train"] not in loaded:
            raise DatasetError(
                f"{owner}: train_split = '{self.split_names['train']}' is not a split of '{self.dataset}' "
                f"(it has {present}). Name the training split."
            )
        features = loaded[self.split_names["train"]].features
        for field, column in (("image_column", self.image_column), ("label_column", self.label_column)):
            if column not in features:
                raise DatasetError(
                    f"{owner}: {field} = '{column}' is not a column of '{self.dataset}' (its columns: "
                    f"{list(features)}). Name the {field.split('_')[0]} column."
                )
        if not isinstance(features[self.image_column], datasets.Image):
            raise DatasetError(
                f"{owner}: image_column = '{self.image_column}' holds {features[self.image_column]}, not images "
                "(an Image feature). Name the image column."
            )
        splits = {
            split: loaded[name].cast_column(self.image_column, datasets.Image(decode=False))
            for split, name in self.split_names.items()
            if name is not None and name in loaded
        }
        label_feature = features[self.label_column]
        if isinstance(label_feature, datasets.ClassLabel):
            names = list(label_feature.names)
            labels = {split: list(table[self.label_column]) for split, table in splits.items()}
        else:
            names, labels = self.plain_labels(splits)
        sources = {
            split: HubImages(
                table.select_columns([self.image_column]),
                self.image_column,
                self.split_names[split],
                labels[split],
                self.decoder,
            )
            for split, table in splits.items()
        }
        return names, sources

    def plain_labels(self, splits: dict[str, Any]) -> tuple[list[str], dict[str, list[int]]]:
        """Class names (sorted distinct training values, as text) and each split's labels as their indices; a value
        of another split that the training split lacks is an error."""
        values = {split: list(table[self.label_column]) for split, table in splits.items()}
        distinct = sorted(set(values["train"]), key=lambda value: (isinstance(value, str), value))
        index = {value: position for position, value in enumerate(distinct)}
        for split, column in values.items():
            unknown = sorted({value for value in column if value not in index}, key=str)
            if unknown:
                raise DatasetError(
                    f"{type(self).__name__}: the {self.split_names[split]} split has labels "
                    f"{', '.join(map(repr, unknown[:5]))} that the training split has not: every class needs "
                    "training images."
                )
        return [str(value) for value in distinct], {
            split: [index[v] for v in column] for split, column in values.items()
        }

    def missing_split_hint(self, name: str) -> str:
        return (
            f"'{self.dataset}' has no {self.split_names.get(name) or name} split and {name}_size = 0; set "
            f"{name}_split to one of its splits or {name}_size > 0."
        )
