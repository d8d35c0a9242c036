"""DataModules read the real on-disk formats, split reproducibly and fail with the paths involved."""

import gzip
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from lit_vir.checks import ConfigError
from lit_vir.data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    CorruptDatasetFile,
    DatasetFilesMissing,
    DigitsDataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
)
from lit_vir.data.files import check_idx_file, gather_raw_files
from tests.fakedata import labelled_images, write_cifar10, write_cifar100, write_idx, write_mnist

MNIST_FILES = ["train-images-idx3-ubyte", "t10k-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"]


def ready(datamodule, stage=None):
    datamodule.prepare_data()
    datamodule.setup(stage)
    return datamodule


def generated_labels(images: np.ndarray, labels: np.ndarray) -> dict[bytes, int]:
    """Each image of a dataset's files (its bytes) → its label: the images are distinct, so an image served by a
    loader, mapped back to bytes, names its label in the files whatever the split and the shuffling did."""
    known = {image.tobytes(): int(label) for image, label in zip(images, labels, strict=True)}
    assert len(known) == len(images)
    return known


def as_bytes(image: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], layout: str) -> bytes:
    """A normalised (C, H, W) image back to the uint8 bytes of its file (`layout` "HW" for MNIST, "CHW" for the
    CIFAR pickles' rows)."""
    pixels = image * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    raw = (pixels * 255).round().to(torch.uint8)
    return (raw[0] if layout == "HW" else raw).numpy().tobytes()


def test_mnist_reads_idx_files_and_splits_validation(tmp_path):
    write_mnist(tmp_path, train=300, test=100)
    data = ready(MNISTDataModule(root=str(tmp_path), batch_size=32, val_size=0.1, download=False))
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (270, 30, 100)
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (32, 1, 28, 28) and images.dtype == torch.float32 and labels.dtype == torch.int64
    known = generated_labels(*labelled_images(300, (28, 28), 10, seed=0))  # write_mnist's training files
    assert labels.tolist() == [known[as_bytes(image, (0.1307,), (0.3081,), "HW")] for image in images]
    served = [as_bytes(data.train_set[i][0], (0.1307,), (0.3081,), "HW") for i in range(len(data.train_set))]
    served += [as_bytes(data.val_set[i][0], (0.1307,), (0.3081,), "HW") for i in range(len(data.val_set))]
    assert sorted(served) == sorted(known)  # every training image once, in one of the two splits


def test_validation_split_is_seeded_and_disjoint(tmp_path):
    write_mnist(tmp_path, train=200, test=20)
    first = ready(MNISTDataModule(root=str(tmp_path), download=False, split_seed=1), "fit")
    again = ready(MNISTDataModule(root=str(tmp_path), download=False, split_seed=1), "fit")
    other = ready(MNISTDataModule(root=str(tmp_path), download=False, split_seed=2), "fit")
    assert first.val_set.indices == again.val_set.indices
    assert first.val_set.indices != other.val_set.indices
    assert not set(first.train_set.indices) & set(first.val_set.indices)


def test_normalisation_uses_the_dataset_statistics(tmp_path):
    write_mnist(tmp_path, train=50, test=10)
    data = ready(MNISTDataModule(root=str(tmp_path), download=False), "test")
    raw, _ = data.test_set.dataset[0]
    pixel = torch.tensor(np.asarray(raw), dtype=torch.float32) / 255
    image, _ = data.test_set[0]
    assert torch.allclose(image[0], (pixel - 0.1307) / 0.3081, atol=1e-5)


def test_augmentation_changes_training_images_only(tmp_path):
    write_mnist(tmp_path, train=50, test=10)
    data = ready(MNISTDataModule(root=str(tmp_path), download=False, augment=True, val_size=10))
    torch.manual_seed(0)
    assert any(not torch.equal(data.train_set[0][0], data.train_set[0][0]) for _ in range(10))
    assert torch.equal(data.val_set[0][0], data.val_set[0][0])


def test_the_augmentation_shifts_by_every_offset_up_to_two_pixels(tmp_path):
    """RandomCrop(28, padding=2): one bright pixel at (14, 14) lands at every (14 + dy, 14 + dx), |dy|, |dx| ≤ 2."""
    raw = write_mnist(tmp_path, train=20, test=10)
    images = np.zeros((20, 28, 28), dtype=np.uint8)
    images[:, 14, 14] = 255
    write_idx(raw / "train-images-idx3-ubyte", images)
    data = ready(MNISTDataModule(root=str(tmp_path), download=False, augment=True, val_size=10), "fit")
    torch.manual_seed(0)
    offsets = set()
    for _ in range(400):
        position = int(data.train_set[0][0][0].argmax())
        offsets.add((position // 28 - 14, position % 28 - 14))
    assert offsets == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}


def test_missing_mnist_files_are_named_with_their_folder(tmp_path):
    data = MNISTDataModule(root=str(tmp_path), download=False)
    with pytest.raises(DatasetFilesMissing) as error:
        data.prepare_data()
    message = str(error.value)
    for name in MNIST_FILES:
        assert str(tmp_path / "MNIST" / "raw" / name) in message


def test_a_split_loaded_before_its_files_are_there_says_what_to_run(tmp_path):
    data = MNISTDataModule(root=str(tmp_path), download=False)
    with pytest.raises(DatasetFilesMissing) as error:
        data.setup("test")  # prepare_data() never ran
    raw = (tmp_path / "MNIST" / "raw").absolute()
    assert str(error.value).splitlines()[:4] == [
        f"MNIST: these files are missing from {raw}:",
        f"  {raw / 't10k-images-idx3-ubyte'}",
        f"  {raw / 't10k-labels-idx1-ubyte'}",
        "Download was not possible: prepare_data() has not run, or could not fetch them",
    ]


@pytest.mark.parametrize(("train", "split"), [(True, "training"), (False, "test")])
def test_images_and_labels_that_do_not_belong_together_are_named_by_split(tmp_path, train, split):
    raw = write_mnist(tmp_path, train=20, test=10)
    prefix = "train" if train else "t10k"
    write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8))
    data = MNISTDataModule(root=str(tmp_path), download=False)
    with pytest.raises(ValueError) as error:
        data.load_split(train)
    images = 20 if train else 10
    assert str(error.value) == (
        f"{raw}: {images} images but 7 labels in the {split} split; the files do not belong together."
    )


def test_with_download_off_the_missing_files_are_named_with_the_folders_searched(tmp_path, monkeypatch):
    system = tmp_path / "system"
    system.mkdir()
    monkeypatch.setattr(FashionMNISTDataModule, "system_folders", (str(system),))
    with pytest.raises(DatasetFilesMissing) as error:
        FashionMNISTDataModule(root=str(tmp_path / "root"), download=False).prepare_data()
    raw = (tmp_path / "root" / "FashionMNIST" / "raw").absolute()
    lines = str(error.value).splitlines()
    assert lines[0] == f"FashionMNIST: these files are missing from {raw}:"
    assert lines[5:7] == [
        f"Also looked for them (or their .gz) in: {system}.",
        "Download was not possible: download is off",
    ]


def test_failed_download_reports_files_and_reason(tmp_path, monkeypatch):
    # The real download path, pointed at a mirror that does not exist (no network in tests).
    monkeypatch.setattr(MNISTDataModule.dataset_class, "mirrors", [f"file://{tmp_path}/no-mirror/"])
    with pytest.raises(DatasetFilesMissing) as error:
        MNISTDataModule(root=str(tmp_path / "root"), download=True).prepare_data()
    message = str(error.value)
    raw = (tmp_path / "root" / "MNIST" / "raw").absolute()
    assert message.startswith(f"MNIST: these files are missing from {raw}:\n  {raw / 'train-images-idx3-ubyte'}")
    reason = next(line for line in message.splitlines() if line.startswith("Download was not possible: "))
    assert reason.split(": ")[1] in {"RuntimeError", "URLError", "OSError", "HTTPError", "FileNotFoundError"}


def test_the_missing_files_message_says_where_it_looked_why_and_what_to_do(tmp_path):
    folder = tmp_path / "raw"
    message = str(DatasetFilesMissing("MNIST", folder, ["a", "b"], [Path("/x"), Path("/y")], reason="offline"))
    assert message == (
        f"MNIST: these files are missing from {folder}:\n  {folder / 'a'}\n  {folder / 'b'}\n"
        "Also looked for them (or their .gz) in: /x, /y.\nDownload was not possible: offline\n"
        f"Put the files (or their .gz) in {folder}/ — e.g. copy them from a machine with internet access — or run "
        "once with internet access and `download: true`."
    )
    assert str(DatasetFilesMissing("MNIST", folder, ["a"])).splitlines()[2].startswith("Put the files")


def test_a_raw_file_is_taken_first_from_its_folder_then_the_search_folders_and_leaves_no_partial_file(tmp_path):
    folder, first, second = tmp_path / "raw", tmp_path / "first", tmp_path / "second"
    for place in (folder, first, second):
        place.mkdir()
    (first / "a").write_bytes(b"plain from first")
    with gzip.open(second / "a.gz", "wb") as stream:
        stream.write(b"unzipped from second")
    with gzip.open(folder / "b.gz", "wb") as stream:
        stream.write(b"unzipped in place")
    (second / "b").write_bytes(b"not this one: the folder's own .gz comes first")
    assert gather_raw_files(folder, ["a", "b", "c"], [first, second]) == ["c"]
    assert (folder / "a").read_bytes() == b"plain from first" and (folder / "b").read_bytes() == b"unzipped in place"
    assert sorted(path.name for path in folder.iterdir()) == ["a", "b", "b.gz"]  # no .partial left
    (first / "a").unlink()
    (second / "a").write_bytes(b"a later copy")
    assert gather_raw_files(folder, ["a"], [first, second]) == []
    assert (folder / "a").read_bytes() == b"plain from first"  # a file already there is kept
    (second / "d").write_bytes(b"after a present one")
    assert gather_raw_files(folder, ["a", "d", "e"], [first, second]) == ["e"]  # a present file ends no search
    assert (folder / "d").read_bytes() == b"after a present one"


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (b"", "bad magic number (empty file), expected 0000 08 0N (an unsigned-byte IDX file)"),
        (b"\x00\x00", "bad magic number 0000, expected 0000 08 0N (an unsigned-byte IDX file)"),
        (b"\x01\x00\x08\x01", "bad magic number 01000801, expected 0000 08 0N (an unsigned-byte IDX file)"),
        (b"\x00\x01\x08\x01", "bad magic number 00010801, expected 0000 08 0N (an unsigned-byte IDX file)"),
        (b"\x00\x00\x09\x01", "bad magic number 00000901, expected 0000 08 0N (an unsigned-byte IDX file)"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x03", "holds items of shape (3,), expected ()"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05" + bytes(4), "is 12 bytes, its header promises 13"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05" + bytes(6), "is 14 bytes, its header promises 13"),
    ],
)
def test_each_broken_idx_header_is_named_with_the_file(tmp_path, header, problem):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(header)
    with pytest.raises(CorruptDatasetFile) as error:
        check_idx_file(path, ())
    assert str(error.value) == f"{path}: {problem}. Delete the file and download it again (or copy an intact one)."


def test_an_intact_idx_file_gives_its_item_count(tmp_path):
    write_idx(tmp_path / "images", np.zeros((7, 3, 2), dtype=np.uint8))
    assert check_idx_file(tmp_path / "images", (3, 2)) == 7
    with pytest.raises(CorruptDatasetFile, match=r"holds items of shape \(3, 2\), expected \(2, 3\)\."):
        check_idx_file(tmp_path / "images", (2, 3))


def test_fashion_mnist_is_taken_from_a_system_package_folder(tmp_path, monkeypatch):
    system = tmp_path / "usr-share-datasets-fashion-mnist"
    raw = write_mnist(tmp_path / "source", folder="FashionMNIST", train=40, test=10)
    system.mkdir()
    for name in MNIST_FILES:
        with open(raw / name, "rb") as source, gzip.open(system / f"{name}.gz", "wb") as target:
            shutil.copyfileobj(source, target)
    monkeypatch.setattr(FashionMNISTDataModule, "system_folders", (str(system),))
    data = ready(FashionMNISTDataModule(root=str(tmp_path / "root"), download=False, val_size=4))
    assert len(data.train_set) == 36 and len(data.test_set) == 10
    assert (tmp_path / "root" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").read_bytes() == (
        raw / "train-images-idx3-ubyte"
    ).read_bytes()


def test_gz_files_placed_in_the_raw_folder_are_unpacked(tmp_path):
    raw = write_mnist(tmp_path, train=20, test=10)
    for name in MNIST_FILES:
        with open(raw / name, "rb") as source, gzip.open(raw / f"{name}.gz", "wb") as target:
            shutil.copyfileobj(source, target)
        (raw / name).unlink()
    data = ready(MNISTDataModule(root=str(tmp_path), download=False, val_size=2))
    assert len(data.test_set) == 10


def test_idx_file_with_bad_magic_number_is_reported_by_path(tmp_path):
    raw = write_mnist(tmp_path, train=20, test=10)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x12\x34\x56\x78" + bytes(100))
    with pytest.raises(CorruptDatasetFile, match="train-images-idx3-ubyte: bad magic number"):
        ready(MNISTDataModule(root=str(tmp_path), download=False), "fit")


def test_truncated_idx_file_is_reported_by_path(tmp_path):
    raw = write_mnist(tmp_path, train=20, test=10)
    path = raw / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptDatasetFile, match=r"t10k-images-idx3-ubyte: is \d+ bytes, its header promises"):
        ready(MNISTDataModule(root=str(tmp_path), download=False), "test")


def test_images_and_labels_of_different_length_are_refused(tmp_path):
    raw = write_mnist(tmp_path, train=20, test=10)
    write_idx(raw / "t10k-labels-idx1-ubyte", torch.zeros(9, dtype=torch.uint8).numpy())
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        ready(MNISTDataModule(root=str(tmp_path), download=False), "test")


def test_cifar10_pickles_load_without_checksums(tmp_path):
    write_cifar10(tmp_path, per_batch=40, test=50)
    options = dict(root=str(tmp_path), download=False, verify_checksums=False, val_size=20)
    data = ready(CIFAR10DataModule(**options, augment=False))  # unaugmented: each image maps back to its file's
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (180, 20, 50)
    assert (data.num_classes, data.image_size, data.in_channels) == (10, 32, 3)
    known = {}  # write_cifar10's five training batches, seeds 0..4
    for seed in range(5):
        images, labels = labelled_images(40, (3, 32, 32), 10, seed)
        known |= generated_labels(images.reshape(40, -1), labels)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as the reference (torchvision's docs)
    for split in (data.train_set, data.val_set):
        for index in range(len(split)):
            image, label = split[index]
            assert image.shape == (3, 32, 32) and label == known[as_bytes(image, mean, std, "CHW")]


def test_cifar_augmentation_shifts_up_to_four_pixels_and_flips_horizontally(tmp_path):
    """RandomCrop(32, padding=4) then a horizontal flip: a bright pixel at row 16, column 8 lands at every row
    16 + dy and column 8 + dx (|dy|, |dx| ≤ 4) or, flipped, 31 − (8 + dx)."""
    folder = write_cifar10(tmp_path, per_batch=10, test=10)
    batch = pickle.loads((folder / "data_batch_1").read_bytes())
    images = np.zeros((10, 3, 32, 32), dtype=np.uint8)
    images[:, :, 16, 8] = 255
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch | {"data": images.reshape(10, -1)}))
    options = dict(root=str(tmp_path), download=False, verify_checksums=False, val_size=1, split_seed=0)
    data = ready(CIFAR10DataModule(**options), "fit")
    bright = next(index for index in range(len(data.train_set)) if data.train_set.indices[index] < 10)
    torch.manual_seed(0)
    places = set()
    for _ in range(2000):
        position = int(data.train_set[bright][0][0].argmax())
        places.add((position // 32 - 16, position % 32))
    columns = [*range(4, 13), *range(19, 28)]  # 8 + dx, and 31 − (8 + dx) flipped
    assert places == {(dy, column) for dy in range(-4, 5) for column in columns}


def test_cifar10_checksum_failure_names_the_switch(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(CorruptDatasetFile, match="verify_checksums: false"):
        ready(CIFAR10DataModule(root=str(tmp_path), download=False), "test")


def test_missing_cifar_files_are_named(tmp_path):
    with pytest.raises(DatasetFilesMissing) as error:
        CIFAR10DataModule(root=str(tmp_path), download=False).prepare_data()
    for name in ("data_batch_1", "data_batch_5", "test_batch", "batches.meta"):
        assert str(Path(tmp_path) / "cifar-10-batches-py" / name) in str(error.value)


def test_cifar100_uses_fine_labels(tmp_path):
    folder = write_cifar100(tmp_path, train=200, test=100)
    data = ready(CIFAR100DataModule(root=str(tmp_path), download=False, verify_checksums=False), "test")
    labels = [data.test_set[index][1] for index in range(len(data.test_set))]
    written = pickle.loads((folder / "test").read_bytes())
    assert data.num_classes == 100 and labels == written["fine_labels"] != written["coarse_labels"]


def test_digits_are_real_8x8_images_with_a_held_out_test_split():
    data = ready(DigitsDataModule(test_size=0.2, val_size=0.1))
    assert len(data.test_set) == 359 and len(data.train_set) + len(data.val_set) == 1797 - 359
    digits = load_digits()  # 0..16 integers, scaled to [0, 1] by 1/16: each served image maps back exactly
    pixels, levels = digits.images / 16, digits.images.astype(np.uint8)
    assert DigitsDataModule.mean[0] == pytest.approx(pixels.mean(), abs=5e-5)  # the constants, 4 decimals
    assert DigitsDataModule.std[0] == pytest.approx(pixels.std(), abs=5e-5)
    known = generated_labels(levels, digits.target)
    served = []
    for split in (data.train_set, data.val_set, data.test_set):
        for index in range(len(split)):
            image, label = split[index]
            raw = (image[0] * torch.tensor(DigitsDataModule.std) + torch.tensor(DigitsDataModule.mean)) * 16
            served.append(raw.round().to(torch.uint8).numpy().tobytes())
            assert image.shape == (1, 8, 8) and label == known[served[-1]]
    assert sorted(served) == sorted(known)  # every image once, in one of the three splits


def test_bad_validation_size_is_a_config_error():
    with pytest.raises(ConfigError, match="val_size"):
        ready(DigitsDataModule(val_size=5000), "fit")


def test_real_fashion_mnist_from_the_debian_package_if_installed(tmp_path):
    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    data = ready(FashionMNISTDataModule(root=str(tmp_path), download=False, val_size=0.1))
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (54_000, 6_000, 10_000)


def test_fashion_mnist_is_normalised_with_its_training_sets_own_statistics():
    """The constants against the 60,000 real training images, read here with gzip and numpy (the IDX header is 16
    bytes): mean 0.2860 and std 0.3530 of the pixels scaled to [0, 1]."""
    path = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
    if not path.exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    pixels = np.frombuffer(gzip.decompress(path.read_bytes())[16:], dtype=np.uint8) / 255.0
    assert pixels.size == 60_000 * 28 * 28
    assert FashionMNISTDataModule.mean == (round(pixels.mean(), 4),) and FashionMNISTDataModule.std == (
        round(pixels.std(), 4),
    )


# --- the loaders, the stages and the shuffling state (ImageDataModule) -----------------------------------------


def test_loaders_batch_shuffle_and_seed_as_configured():
    data = ready(DigitsDataModule(batch_size=32, eval_batch_size=50, val_size=0.1))
    train, val, test, predict = (
        data.train_dataloader(),
        data.val_dataloader(),
        data.test_dataloader(),
        data.predict_dataloader(),
    )
    assert (train.batch_size, val.batch_size, test.batch_size, predict.batch_size) == (32, 50, 50, 50)
    assert type(train.sampler).__name__ == "RandomSampler" and train.generator is data.shuffle_generator
    for loader in (val, test, predict):  # in order, on a throwaway generator (never the global stream's)
        assert type(loader.sampler).__name__ == "SequentialSampler" and loader.generator is not data.shuffle_generator
    assert predict.dataset is data.test_set and val.dataset is data.val_set
    assert not any(loader.drop_last or loader.pin_memory for loader in (train, val, test))
    assert (train.num_workers, train.persistent_workers) == (0, False)
    assert DigitsDataModule(batch_size=7).eval_batch_size == 7  # the training batch size by default
    workers = DigitsDataModule(num_workers=2, pin_memory=True, persistent_workers=True)
    workers.setup("fit")
    loader = workers.train_dataloader()
    assert (loader.num_workers, loader.pin_memory, loader.persistent_workers) == (2, True, True)
    assert DigitsDataModule(persistent_workers=True).persistent_workers is False  # no workers to keep


@pytest.mark.parametrize(
    ("stage", "built"),
    [("fit", {"train", "val"}), ("validate", {"train", "val"}), ("test", {"test"}), ("predict", {"test"}),
     (None, {"train", "val", "test"})],
)  # fmt: skip
def test_setup_builds_the_splits_its_stage_needs_once(stage, built):
    data = DigitsDataModule()
    data.setup(stage)
    assert {name for name in ("train", "val", "test") if getattr(data, f"{name}_set") is not None} == built
    kept = data.train_set, data.test_set
    data.setup(stage)
    assert (data.train_set, data.test_set) == kept  # not read again


def test_a_loader_of_a_split_not_built_yet_is_refused():
    with pytest.raises(RuntimeError, match=r"^DigitsDataModule: setup\(\) has not built this split yet\.$"):
        DigitsDataModule().train_dataloader()


def test_a_restored_shuffle_state_shuffles_as_the_saved_run_did():
    data = ready(DigitsDataModule(batch_size=64), "fit")
    state = data.state_dict()
    first = [labels for _, labels in data.train_dataloader()]
    restored = ready(DigitsDataModule(batch_size=64), "fit")
    restored.load_state_dict(state)
    assert all(
        torch.equal(a, b) for a, b in zip(first, (labels for _, labels in restored.train_dataloader()), strict=True)
    )
    assert set(state) == {"shuffle_generator", "preprocessing"}  # the latter is saved for export, never loaded


@pytest.mark.parametrize(("val_size", "counts"), [(0.25, (1346, 449)), (100, (1695, 100)), (0.5, (897, 898))])
def test_the_validation_split_is_a_rounded_fraction_or_a_count(val_size, counts):
    """test_size 0.001 holds out round(1.797) = 2 of digits' 1797 images; of the 1795 left a fraction is rounded
    (0.25·1795 = 448.75 → 449; 897.5 → 898, half to even), a count is taken as it is."""
    data = ready(DigitsDataModule(val_size=val_size, test_size=0.001), "fit")
    assert (len(data.train_set), len(data.val_set)) == counts


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, r"batch_size = 0 is outside the allowed range \[1, inf\)\."),
        ({"num_workers": -1}, r"num_workers = -1 is outside the allowed range \[0, inf\)\."),
        (
            {"val_size": 0},
            r"val_size = 0 is outside the allowed range \(0, inf\)\. Give a fraction in \(0, 1\) or a number of "
            r"images\.",
        ),
        ({"auto_augment": "auto"}, r"auto_augment = 'auto' is not one of 'rand_augment', 'trivial_augment'\."),
        ({"rand_augment_ops": 0}, r"rand_augment_ops = 0 is outside the allowed range \[1, inf\)\."),
        ({"rand_augment_magnitude": 31}, r"rand_augment_magnitude = 31 is outside the allowed range \[0, 30\]\."),
        ({"random_erasing": 1.5}, r"random_erasing = 1.5 is outside the allowed range \[0, 1\]\."),
    ],
)
def test_loader_options_outside_their_ranges_are_refused_with_the_range(options, message):
    with pytest.raises(ConfigError, match=r"^DigitsDataModule: " + message + "$"):
        DigitsDataModule(**options)


def test_a_validation_split_that_leaves_no_training_image_is_refused_with_the_counts():
    with pytest.raises(ConfigError) as error:
        ready(DigitsDataModule(val_size=1438), "fit")
    assert str(error.value) == (
        "DigitsDataModule: val_size = 1438 leaves 0 training and 1438 validation images out of 1438; both must be at "
        "least 1."
    )
