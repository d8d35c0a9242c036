"""A Hugging Face `datasets` dataset: built and saved here (save_to_disk), read by HuggingFaceDataModule with the
image folder's splits, links and checks, and refused with a message — not a hang — when it would need the Hub."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lit_vir.checks import ConfigError
from lit_vir.cli import build_from_config, main
from lit_vir.data import DatasetError, HuggingFaceDataModule
from tests.conftest import CONFIGS, TINY_VIR
from tests.fakedata import write_hf_dataset

datasets = pytest.importorskip("datasets")

COUNTS = {"train": {"cat": 8, "dog": 6, "emu": 6}, "test": {"cat": 2, "dog": 2, "emu": 1}}


def hub_data(folder, **options) -> HuggingFaceDataModule:
    return HuggingFaceDataModule(
        str(folder), **{"image_column": "img", "image_size": 8, "in_channels": 1, "batch_size": 4, **options}
    )


def test_a_saved_dataset_trains_with_its_shape_linked_into_the_model(tmp_path, monkeypatch):
    folder = write_hf_dataset(tmp_path / "saved", COUNTS)
    monkeypatch.chdir(tmp_path)
    data_args = [
        "--data",
        "lit_vir.data.HuggingFaceDataModule",
        "--data.dataset",
        str(folder),
        "--data.image_column",
        "img",
        "--data.image_size",
        "8",
        "--data.in_channels",
        "1",
    ]
    model, data = build_from_config(["-c", str(CONFIGS / "vir.yaml"), *data_args, *TINY_VIR])
    assert (data.num_classes, data.class_names) == (3, ("cat", "dog", "emu"))
    backbone = model.backbone
    assert (model.num_classes, backbone.head.linear.out_features, backbone.embedding.num_patches) == (3, 3, 4)
    assert backbone.embedding.projection.in_features == 4 * 4 * 1  # P 4, one channel
    sizes = {split: len(indices) for split, (_, indices) in data.splits.items()}
    assert sizes == {"train": 18, "val": 2, "test": 5, "predict": 5}  # val: round(0.1·20) off the training split
    main(
        [
            "fit",
            "-c",
            str(CONFIGS / "vir.yaml"),
            *data_args,
            *TINY_VIR,
            "--trainer.fast_dev_run",
            "true",
            "--trainer.accelerator",
            "cpu",
        ]
    )


def test_the_statistics_and_images_are_the_stored_bytes(tmp_path):
    folder = write_hf_dataset(tmp_path / "saved", COUNTS)
    data = hub_data(folder, val_size=2)
    data.setup("fit")
    stored = datasets.load_from_disk(str(folder))["train"]
    source, train = data.splits["train"]
    pixels = []
    for index in train:  # the stored images are already 8×8 or get resized: compare through Pillow itself
        image = stored[index]["img"].convert("L")
        if image.size != (8, 8):
            assert source.source(index) == f"train[{index}]"
            continue
        pixels.append(np.asarray(image, dtype=np.float64) / 255)
        np.testing.assert_allclose(source[index][0][0].numpy(), pixels[-1], atol=1e-6)
    assert len(pixels) >= 3  # the loop above compared some images, not none
    whole = np.stack([source[index][0][0].numpy().astype(np.float64) for index in train])
    assert data.mean[0] == pytest.approx(whole.mean(), abs=1e-6) and data.std[0] == pytest.approx(whole.std(), abs=1e-6)


def test_plain_string_labels_become_the_sorted_classes(tmp_path):
    folder = write_hf_dataset(tmp_path / "saved", COUNTS, string_labels=True)
    data = hub_data(folder)
    assert data.class_names == ("cat", "dog", "emu")
    stored = datasets.load_from_disk(str(folder))["test"]["label"]
    assert [data.class_names[label] for label in data.splits["test"][0].labels] == list(stored)


def test_a_label_only_in_the_test_split_is_refused(tmp_path):
    folder = write_hf_dataset(
        tmp_path / "saved", {"train": {"cat": 4, "dog": 4}, "test": {"cat": 1, "yak": 1}}, string_labels=True
    )
    with pytest.raises(DatasetError, match=r"the test split has labels 'yak' that the training split has not"):
        hub_data(folder)


def test_a_class_without_images_in_a_split_is_refused(tmp_path):
    folder = write_hf_dataset(tmp_path / "saved", {"train": {"cat": 4, "dog": 4}, "test": {"cat": 2, "dog": 0}})
    with pytest.raises(DatasetError, match=r"class 'dog' has no images in the test split"):
        hub_data(folder)


def test_missing_or_wrong_columns_are_named(tmp_path):
    folder = write_hf_dataset(tmp_path / "saved", COUNTS)
    with pytest.raises(DatasetError, match=r"image_column = 'image' is not a column .*\['img', 'label'\]"):
        hub_data(folder, image_column="image")
    with pytest.raises(DatasetError, match=r"image_column = 'label' holds ClassLabel.*not images"):
        hub_data(folder, image_column="label", label_column="img")
    with pytest.raises(DatasetError, match=r"train_split = 'training' is not a split .*\['train', 'test'\]"):
        hub_data(folder, train_split="training")


def test_a_truncated_image_stops_setup_with_its_split_and_index(tmp_path):
    folder = write_hf_dataset(tmp_path / "saved", COUNTS, truncated=3)
    data = hub_data(folder, val_size=1)
    with pytest.raises(
        DatasetError, match=r"(?s)train\[3\]: cannot be decoded, the file is truncated.*skip_bad_images"
    ):
        data.setup("fit")


def test_offline_a_name_not_in_the_cache_is_refused_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(
        DatasetError,
        match=r"'someone/cats' is not a folder, and offline \(HF_HUB_OFFLINE.*"
        r"not in the Hugging Face cache.*save_to_disk",
    ):
        hub_data("someone/cats")


def test_an_unreachable_hub_is_a_message_not_a_hang(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens, refused at once
    with pytest.raises(DatasetError, match=r"the Hub \(http://127.0.0.1:9\) cannot be reached: ConnectionRefused"):
        hub_data("someone/cats", hub_timeout=5)


def test_a_folder_that_is_not_a_saved_dataset_is_refused(tmp_path):
    (tmp_path / "photos").mkdir()
    Image.new("L", (4, 4)).save(io.BytesIO(), "PNG")
    with pytest.raises(DatasetError, match=r"is a folder but not one written by save_to_disk"):
        hub_data(tmp_path / "photos")
    with pytest.raises(ConfigError, match=r"hub_timeout = 0 is outside"):
        hub_data(tmp_path / "photos", hub_timeout=0)
