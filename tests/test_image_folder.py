"""Your own images: the image-folder DataModule reads real PNG/JPEG files of several sizes and modes, splits them
stratified and seeded, computes the training statistics, and refuses every unusable layout or file with its path."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lit_vir.checks import ConfigError
from lit_vir.cli import main
from lit_vir.data import DatasetError, ImageFolderDataModule
from lit_vir.data.splits import stratified_split
from tests.conftest import CONFIGS, TINY_VIR
from tests.fakedata import IMAGE_KINDS, reference_pixels, write_class_folders, write_image

COUNTS = {"cat": 12, "dog": 10, "emu": 9}


def folder_data(root: Path, **options) -> ImageFolderDataModule:
    return ImageFolderDataModule(str(root), **{"image_size": 8, "in_channels": 3, "batch_size": 4, **options})


def test_a_folder_of_class_folders_is_split_stratified_and_seeded(tmp_path):
    write_class_folders(tmp_path, COUNTS)
    data = folder_data(tmp_path, val_size=0.2, test_size=0.1, split_seed=3)
    assert (data.num_classes, data.class_names) == (3, ("cat", "dog", "emu"))
    source, train = data.splits["train"]
    _, val = data.splits["val"]
    _, test = data.splits["test"]
    # 31 images: test = round(3.1) = 3, one per class (12, 10, 9 → shares 1.16, 0.97, 0.87); then validation
    # round(0.2·28) = 6 of the 11, 9, 8 left: shares 2.36, 1.93, 1.71 → 2, 2, 2 (remainders .36 < .71 < .93)
    labels = np.array(source.labels)
    assert [np.bincount(labels[split], minlength=3).tolist() for split in (test, val, train)] == [
        [1, 1, 1],
        [2, 2, 2],
        [9, 7, 6],
    ]
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    again = folder_data(tmp_path, val_size=0.2, test_size=0.1, split_seed=3)
    other = folder_data(tmp_path, val_size=0.2, test_size=0.1, split_seed=4)
    assert again.splits["val"][1] == val and other.splits["val"][1] != val


def test_stratified_split_gives_each_class_its_largest_remainder_share():
    labels = [0] * 5 + [1] * 3 + [2] * 2  # total round(0.5·10) = 5: exact 2.5, 1.5, 1.0 → 3, 1, 1 (ties: lower class)
    kept, taken = stratified_split(labels, 0.5, seed=0, owner="T", field="val_size", class_names=["a", "b", "c"])
    assert np.bincount([labels[i] for i in taken], minlength=3).tolist() == [3, 1, 1]
    assert sorted(kept + taken) == list(range(10))
    counted = stratified_split(labels, 4, seed=0, owner="T", field="val_size", class_names=["a", "b", "c"])[1]
    assert len(counted) == 4  # a count, not a fraction: 2, 1.2, 0.8 → 2, 1, 1


def test_split_folders_are_used_as_given(tmp_path):
    write_class_folders(tmp_path / "train", COUNTS)
    write_class_folders(tmp_path / "val", {"cat": 2, "dog": 2, "emu": 1}, seed=7)
    write_class_folders(tmp_path / "test", {"cat": 1, "dog": 3, "emu": 2}, seed=9)
    data = folder_data(tmp_path)
    sizes = {split: len(indices) for split, (_, indices) in data.splits.items()}
    assert sizes == {"train": 31, "val": 5, "test": 6, "predict": 6}
    assert data.splits["val"][0].paths[0] == tmp_path / "val" / "cat" / "000.png"


@pytest.mark.parametrize("channels", [1, 3])
def test_every_mode_and_size_is_read_as_pillow_reads_it(tmp_path, channels):
    paths = write_class_folders(tmp_path, {"a": 6, "b": 6})
    data = folder_data(tmp_path, in_channels=channels, test_size=0, val_size=1)
    source, _ = data.splits["train"]
    kinds = {(path.suffix, Image.open(path).mode, Image.open(path).size) for path in paths}
    assert len(kinds) == len(IMAGE_KINDS)  # PNG and JPEG; L, RGB, RGBA, P; square, tall and wide
    for index, path in enumerate(source.paths):
        image, _ = source[index]
        assert image.shape == (channels, 8, 8) and image.dtype == torch.float32
        np.testing.assert_allclose(image.numpy(), reference_pixels(path, 8, channels), atol=1e-6)


def test_centre_crop_keeps_the_middle_of_a_wide_image(tmp_path):
    """A 40×20 image, red left half, blue right half → 16×8 (shorter side 20 → 8), columns 4..11 kept: red then blue."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20, 0] = 255
    pixels[:, 20:, 2] = 255
    (tmp_path / "a").mkdir()
    Image.fromarray(pixels).save(tmp_path / "a" / "wide.png")
    write_class_folders(tmp_path, {"b": 2})
    data = folder_data(tmp_path, test_size=0, val_size=1)
    image, label = data.splits["train"][0][0]
    assert label == 0
    assert torch.all(image[0, :, :3] == 1) and torch.all(image[2, :, :3] == 0)  # columns 4–6: red only
    assert torch.all(image[2, :, 5:] == 1) and torch.all(image[0, :, 5:] == 0)  # columns 9–11: blue only
    squashed = folder_data(tmp_path, test_size=0, val_size=1, resize="squash").splits["train"][0][0][0]
    assert torch.all(squashed[0, :, :3] == 1) and torch.all(squashed[2, :, 5:] == 1)  # the whole width, halved


def test_sixteen_bit_grey_and_a_transparent_palette_are_converted(tmp_path):
    grey = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    (tmp_path / "a").mkdir()
    Image.fromarray(grey).save(tmp_path / "a" / "deep.png")
    palette = Image.fromarray(np.full((8, 8), 3, np.uint8), mode="L").convert("P")
    palette.info["transparency"] = 0
    palette.save(tmp_path / "a" / "palette.png", transparency=0)
    write_class_folders(tmp_path, {"b": 2})
    source = folder_data(tmp_path, in_channels=1, test_size=0, val_size=1).splits["train"][0]
    deep = source[source.paths.index(tmp_path / "a" / "deep.png")][0]
    np.testing.assert_allclose(deep[0].numpy(), grey / 65535, atol=1e-6)  # not clipped at 255
    flat = source[source.paths.index(tmp_path / "a" / "palette.png")][0]
    assert torch.allclose(flat, torch.full_like(flat, 3 / 255), atol=1e-6)


def test_exif_orientation_turns_the_image_upright(tmp_path):
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[0, :, 1] = 255  # a green top row
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    (tmp_path / "a").mkdir()
    Image.fromarray(pixels).save(tmp_path / "a" / "turned.png", exif=exif)
    write_class_folders(tmp_path, {"b": 2})
    image = folder_data(tmp_path, test_size=0, val_size=1).splits["train"][0][0][0]
    assert torch.all(image[1, :, -1] == 1) and image[1, :, :-1].sum() == 0  # the top row became the right column


def test_statistics_are_the_training_images_pixel_moments(tmp_path):
    write_class_folders(tmp_path, COUNTS)
    data = folder_data(tmp_path, val_size=0.2, test_size=0.1)
    data.setup("fit")
    source, train = data.splits["train"]
    pixels = np.stack([reference_pixels(source.paths[index], 8, 3) for index in train])  # (n, 3, 8, 8)
    expected_mean, expected_std = pixels.mean(axis=(0, 2, 3)), pixels.std(axis=(0, 2, 3))
    np.testing.assert_allclose(data.mean, expected_mean, atol=1e-9)
    np.testing.assert_allclose(data.std, expected_std, atol=1e-9)
    images, _ = next(iter(data.val_dataloader()))
    first = reference_pixels(source.paths[data.val_set.indices[0]], 8, 3)
    normalised = (first - expected_mean[:, None, None]) / expected_std[:, None, None]
    np.testing.assert_allclose(images[0].numpy(), normalised, atol=1e-5)


def test_given_statistics_win_and_a_checkpoints_replace_computed_ones(tmp_path):
    write_class_folders(tmp_path, COUNTS)
    given = folder_data(tmp_path, mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.1])
    given.setup("fit")
    assert (given.mean, given.std) == ((0.5, 0.4, 0.3), (0.2, 0.2, 0.1))
    trained = folder_data(tmp_path)
    trained.setup("fit")
    state = {**trained.state_dict(), "preprocessing": {**trained.preprocessing().as_dict(), "mean": [0.1, 0.2, 0.3]}}
    resumed = folder_data(tmp_path)
    resumed.load_state_dict(state)
    assert resumed.mean == (0.1, 0.2, 0.3) and resumed.std == trained.std
    other = dict(state["preprocessing"], class_names=["cat", "dog", "yak"])
    with pytest.raises(DatasetError, match=r"classes \['cat', 'dog', 'yak'\].*Use the data"):
        folder_data(tmp_path).load_state_dict({**state, "preprocessing": other})


def test_other_files_are_left_out_and_counted(tmp_path, caplog):
    write_class_folders(tmp_path, COUNTS)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "dog" / ".DS_Store").write_bytes(b"\0")
    with caplog.at_level(logging.INFO, logger="lit_vir"):
        data = folder_data(tmp_path)
    assert len(data.splits["train"][0]) == 31
    assert "left out 1 files that are not images by their extension" in caplog.text
    assert str(tmp_path / "cat" / "notes.txt") in caplog.text


# ----- errors: each names the path, what was found and what to do, before any image is decoded or trained on


def test_a_missing_root_is_refused(tmp_path):
    with pytest.raises(DatasetError, match=r"root = '.*nowhere' does not exist.*Expected root/<class>/<images>"):
        folder_data(tmp_path / "nowhere")


def test_an_empty_root_is_refused(tmp_path):
    with pytest.raises(DatasetError, match=rf"{tmp_path} has no class folders \(it is empty\)"):
        folder_data(tmp_path)


def test_images_outside_class_folders_are_refused(tmp_path):
    write_class_folders(tmp_path, COUNTS)
    write_image(tmp_path / "stray.png", "RGB", (8, 8), 0, 0)
    with pytest.raises(DatasetError, match=rf"1 images lie directly in {tmp_path} \(e.g. stray.png\).*class folder"):
        folder_data(tmp_path)


def test_a_class_folder_without_images_is_refused(tmp_path):
    write_class_folders(tmp_path, COUNTS)
    (tmp_path / "fox").mkdir()
    (tmp_path / "fox" / "readme.txt").write_text("todo")
    with pytest.raises(
        DatasetError, match=r"class folder .*fox holds no images \(only 1 other files, e.g. readme.txt\)"
    ):
        folder_data(tmp_path)


@pytest.mark.parametrize(
    ("val_classes", "message"),
    [
        ({"cat": 2, "dog": 2}, r"'emu' missing from val/"),
        ({"cat": 2, "dog": 2, "emu": 1, "yak": 1}, r"'yak' only in val/"),
    ],
)
def test_a_class_in_one_split_and_not_another_is_refused(tmp_path, val_classes, message):
    write_class_folders(tmp_path / "train", COUNTS)
    write_class_folders(tmp_path / "val", val_classes)
    with pytest.raises(
        DatasetError,
        match=rf"classes of {tmp_path / 'val'} are not those of the training folder: "
        rf"{message}.*same class folders",
    ):
        folder_data(tmp_path)


def test_split_folders_next_to_class_folders_are_refused(tmp_path):
    write_class_folders(tmp_path / "train", COUNTS)
    write_class_folders(tmp_path, {"cat": 2})
    with pytest.raises(DatasetError, match=r"holds train/ and also cat/: is it a folder of splits or of classes"):
        folder_data(tmp_path)


def test_too_few_images_for_the_validation_fraction_are_refused(tmp_path):
    write_class_folders(tmp_path, {"cat": 3, "dog": 1})
    # 3 of 4 images: shares 2.25 and 0.75 → 2 and 1, the only dog
    with pytest.raises(ConfigError, match=r"val_size = 0.75 would take every image of class 'dog' \(its 1 image"):
        folder_data(tmp_path, test_size=0, val_size=0.75)
    with pytest.raises(ConfigError, match=r"val_size = 0.1 takes 0 of 4 images, leaving 4.*≥ 0.125"):
        folder_data(tmp_path, test_size=0, val_size=0.1)


def unusable_files(root: Path) -> dict[Path, str]:
    """A text file named .png, a PNG and a JPEG cut in half: what each must be refused for."""
    write_class_folders(root, COUNTS)
    (root / "cat" / "fake.png").write_text("<html>not a picture</html>")
    cut = [next((root / "dog").glob("*.png")), next((root / "dog").glob("*.jpg"))]
    for path in cut:
        whole = path.read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    truncated = "cannot be decoded, the file is truncated or damaged"
    return {root / "cat" / "fake.png": "not an image Pillow can read", cut[0]: truncated, cut[1]: truncated}


def test_files_that_are_not_images_or_are_truncated_stop_setup_with_their_paths(tmp_path):
    problems = unusable_files(tmp_path)
    data = folder_data(tmp_path, test_size=0)
    with pytest.raises(DatasetError) as raised:
        data.setup("fit")
    message = str(raised.value)
    for path, problem in problems.items():
        if path in {data.splits["train"][0].paths[i] for i in data.splits["train"][1]}:
            assert f"{path}: {problem}" in message
    assert "set skip_bad_images: true" in message


def test_skip_bad_images_leaves_them_out_and_counts_them(tmp_path, caplog):
    problems = unusable_files(tmp_path)
    data = folder_data(tmp_path, test_size=0, val_size=1, skip_bad_images=True)
    with caplog.at_level(logging.WARNING, logger="lit_vir"):
        data.setup("fit")
    train_paths = [data.splits["train"][0].paths[i] for i in data.splits["train"][1]]
    bad = [path for path in problems if path in train_paths]
    assert f"skipped {len(bad)} of the {len(train_paths)} train images that cannot be used" in caplog.text
    kept = [data.train_set.source(index) for index in range(len(data.train_dataloader().dataset))]
    assert len(kept) == len(train_paths) - len(bad) and not set(map(str, bad)) & set(kept)


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    write_class_folders(tmp_path, COUNTS)
    Image.new("L", (2000, 1500)).save(tmp_path / "emu" / "huge.png")  # 3 M pixels in a few kilobytes
    data = folder_data(tmp_path, test_size=0, val_size=1, max_image_pixels=1_000_000)
    with pytest.raises(
        DatasetError,
        match=r"huge.png: too large to decode safely: 2000×1500 = 3,000,000 pixels, "
        r"above max_image_pixels = 1,000,000.*raise max_image_pixels",
    ):
        data.setup("fit")


def test_bad_options_name_the_field(tmp_path):
    write_class_folders(tmp_path, COUNTS)
    with pytest.raises(ConfigError, match=r"give both mean and std"):
        folder_data(tmp_path, mean=[0.5, 0.5, 0.5])
    with pytest.raises(ConfigError, match=r"one value per channel \(in_channels = 3\)"):
        folder_data(tmp_path, mean=[0.5], std=[0.2])
    with pytest.raises(ConfigError, match=r"in_channels = 2 is not one of \[1, 3, 4\]"):
        folder_data(tmp_path, in_channels=2)
    with pytest.raises(ConfigError, match=r"predict_root without root needs classes"):
        ImageFolderDataModule(predict_root=str(tmp_path), image_size=8)


def test_a_bad_file_stops_fit_before_the_run_folder_is_made(tmp_path, monkeypatch, capsys):
    problems = unusable_files(tmp_path / "my_images")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                "-c",
                str(CONFIGS / "vir.yaml"),
                "-c",
                str(CONFIGS / "data" / "image_folder.yaml"),
                "--data.root",
                "my_images",
                "--data.image_size",
                "8",
                "--data.num_workers",
                "0",
                *TINY_VIR,
            ]
        )
    error = capsys.readouterr().err
    assert exit_info.value.code == 1 and error.startswith("lit-vir: ImageFolderDataModule: ")
    assert any(f"{path.relative_to(tmp_path)}: {problem}" in error for path, problem in problems.items())
    assert not (tmp_path / "logs").exists()  # checked in prepare_data, before the logger makes the run folder
