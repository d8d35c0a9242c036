"""CIFAR-10/100 and CIFAR-10-C on disk: the real download path (torchvision's downloader and extractor, from an
HTTP server on this machine holding an archive in the published layout, as a user with internet gets it over
https), and every way the files can be wrong, each reported with its path, what was found and what to do."""

from __future__ import annotations

import functools
import hashlib
import pickle
import tarfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import datasets

from lit_vir.data import (
    CIFAR10CDataModule,
    CIFAR10DataModule,
    CIFAR100DataModule,
    CorruptDatasetFile,
    DatasetFilesMissing,
)
from tests.fakedata import labelled_images, write_cifar10
from tests.test_cifar10c import PER_SEVERITY, ready, write_cifar_c


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request lines in the test output
        pass


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on 127.0.0.1 serving the folder `tmp_path/served`: (folder, its base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def archive_of(folder: Path, served: tuple[Path, str], name: str) -> tuple[str, str]:
    """An archive named `name` (.tar.gz or .tar) holding `folder` under its own name, put on the server: (its URL,
    its MD5)."""
    archive = served[0] / name
    with tarfile.open(archive, "w:gz" if name.endswith(".gz") else "w") as tar:
        tar.add(folder, arcname=folder.name)
    return f"{served[1]}/{name}", hashlib.md5(archive.read_bytes()).hexdigest()


def test_cifar10_download_fetches_and_unpacks_the_published_archive_layout(tmp_path, monkeypatch, served):
    url, md5 = archive_of(write_cifar10(tmp_path / "source", per_batch=6, test=7), served, "cifar-10-python.tar.gz")
    monkeypatch.setattr(datasets.CIFAR10, "url", url)
    monkeypatch.setattr(datasets.CIFAR10, "tgz_md5", md5)
    data = ready(CIFAR10DataModule(root=str(tmp_path / "root"), download=True, verify_checksums=False))
    assert len(data.test_set) == 7
    written = pickle.loads((tmp_path / "root" / "cifar-10-batches-py" / "test_batch").read_bytes())
    assert [data.test_set[index][1] for index in range(7)] == written["labels"]


def test_a_failed_cifar_download_names_the_missing_files_and_the_reason(tmp_path, monkeypatch, served):
    monkeypatch.setattr(datasets.CIFAR10, "url", f"{served[1]}/nowhere.tar.gz")  # 404
    data = CIFAR10DataModule(root=str(tmp_path), download=True, verify_checksums=False)
    with pytest.raises(DatasetFilesMissing) as refusal:
        data.prepare_data()
    lines = str(refusal.value).splitlines()
    assert lines[0] == f"CIFAR10: these files are missing from {tmp_path / 'cifar-10-batches-py'}:"
    assert len(lines) == 1 + 7 + 2 and lines[8].startswith("Download was not possible: HTTPError: HTTP Error 404")


def test_with_download_off_the_refusal_says_so(tmp_path):
    with pytest.raises(DatasetFilesMissing) as refusal:
        CIFAR100DataModule(root=str(tmp_path), download=False).prepare_data()
    lines = str(refusal.value).splitlines()
    assert lines[0] == f"CIFAR100: these files are missing from {tmp_path / 'cifar-100-python'}:"
    assert lines[1:4] == [f"  {tmp_path / 'cifar-100-python' / name}" for name in ("train", "test", "meta")]
    assert lines[4] == "Download was not possible: download is off"


def test_reading_before_the_files_exist_says_prepare_data_has_not_run(tmp_path):
    with pytest.raises(DatasetFilesMissing, match="Download was not possible: prepare_data\\(\\) has not run"):
        CIFAR10DataModule(root=str(tmp_path), download=False).load_split(train=False)


def rewrite_test_batch(folder: Path, **changes) -> None:
    entry = pickle.loads((folder / "test_batch").read_bytes())
    (folder / "test_batch").write_bytes(pickle.dumps(entry | changes))


def test_cifar_batches_that_are_not_pickles_are_reported_with_the_folder(tmp_path):
    folder = write_cifar10(tmp_path, per_batch=4, test=5)
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(CorruptDatasetFile) as refusal:
        ready(CIFAR10DataModule(root=str(tmp_path), verify_checksums=False))
    assert str(refusal.value).startswith(f"{folder}: cannot be read as CIFAR batches (")


def test_cifar_images_and_labels_of_different_counts_are_refused(tmp_path):
    folder = write_cifar10(tmp_path, per_batch=4, test=5)
    rewrite_test_batch(folder, labels=[0, 1, 2, 3])
    with pytest.raises(CorruptDatasetFile) as refusal:
        ready(CIFAR10DataModule(root=str(tmp_path), verify_checksums=False))
    assert str(refusal.value) == (
        f"{folder}: 5 images but 4 labels. Delete the file and download it again (or copy an intact one)."
    )


def test_cifar_labels_beyond_the_classes_are_refused_and_the_last_class_is_accepted(tmp_path):
    folder = write_cifar10(tmp_path, per_batch=4, test=5)
    rewrite_test_batch(folder, labels=[0, 9, 9, 1, 2])
    data = ready(CIFAR10DataModule(root=str(tmp_path), verify_checksums=False))
    assert [data.test_set[index][1] for index in range(5)] == [0, 9, 9, 1, 2]
    rewrite_test_batch(folder, labels=[0, 12, 9, 1, 2])
    with pytest.raises(CorruptDatasetFile, match=r"labels reach 12, but there are 10 classes\. Delete"):
        ready(CIFAR10DataModule(root=str(tmp_path), verify_checksums=False))


def test_unverified_copies_keep_the_dataset_but_drop_every_checksum(tmp_path):
    data = CIFAR10DataModule(root=str(tmp_path), verify_checksums=False)
    unverified = data._dataset_class()
    assert unverified.__name__ == "UnverifiedCIFAR10" and issubclass(unverified, datasets.CIFAR10)
    assert [name for name, _ in unverified.train_list] == [f"data_batch_{index}" for index in range(1, 6)]
    assert all(md5 is None for _, md5 in unverified.train_list + unverified.test_list)
    assert unverified.meta == {**datasets.CIFAR10.meta, "md5": None} and datasets.CIFAR10.meta["md5"] is not None
    assert CIFAR10DataModule(root=str(tmp_path))._dataset_class() is datasets.CIFAR10


def test_cifar_normalisation_constants_are_the_references():
    """CIFAR-10 with ImageNet's mean and std (torchvision's documented ImageNet values), CIFAR-100 with 0.5."""
    assert (CIFAR10DataModule.mean, CIFAR10DataModule.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert (CIFAR100DataModule.mean, CIFAR100DataModule.std) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


# CIFAR-10-C


def test_cifar10c_download_fetches_and_unpacks_the_published_archive(tmp_path, monkeypatch, served):
    source = write_cifar_c(tmp_path / "source", ["fog", "snow"])
    url, md5 = archive_of(source, served, "CIFAR-10-C.tar")
    monkeypatch.setattr(CIFAR10CDataModule, "archive_url", url)
    monkeypatch.setattr(CIFAR10CDataModule, "archive_md5", md5)
    data = ready(CIFAR10CDataModule(root=str(tmp_path / "root"), corruptions=["snow"], severities=[2], download=True))
    assert len(data.cell_sets[0]) == PER_SEVERITY
    assert (tmp_path / "root" / "CIFAR-10-C" / "fog.npy").is_file()


def test_cifar10c_archive_without_the_files_or_with_another_checksum_is_refused(tmp_path, monkeypatch, served):
    source = write_cifar_c(tmp_path / "source", ["fog"], folder="elsewhere")
    url, md5 = archive_of(source, served, "CIFAR-10-C.tar")
    monkeypatch.setattr(CIFAR10CDataModule, "archive_url", url)
    monkeypatch.setattr(CIFAR10CDataModule, "archive_md5", md5)
    data = CIFAR10CDataModule(root=str(tmp_path / "root"), corruptions=["fog"], download=True)
    with pytest.raises(DatasetFilesMissing) as refusal:
        data.prepare_data()
    assert "Download was not possible: the archive did not hold them in CIFAR-10-C/. The published archive is " in (
        str(refusal.value)
    )
    monkeypatch.setattr(CIFAR10CDataModule, "archive_md5", "0" * 32)
    other = CIFAR10CDataModule(root=str(tmp_path / "other"), corruptions=["fog"], download=True)
    with pytest.raises(DatasetFilesMissing, match="Download was not possible: RuntimeError: "):
        other.prepare_data()


def test_cifar10c_with_the_clean_cell_reads_cifar10s_test_batch_first(tmp_path):
    write_cifar_c(tmp_path, ["fog"])
    folder = write_cifar10(tmp_path, per_batch=4, test=6)
    data = CIFAR10CDataModule(root=str(tmp_path), corruptions=["fog"], severities=[1], include_clean=True)
    data.clean_class = lambda **options: CIFAR10DataModule(**options, verify_checksums=False)  # generated files
    data = ready(data)
    assert data.cells == [("clean", 0), ("fog", 1)]
    clean = data.cell_sets[0]
    written = pickle.loads((folder / "test_batch").read_bytes())
    images, labels = labelled_images(6, (3, 32, 32), 10, 5)  # write_cifar10's test batch: seed 0 + 5
    assert [clean[index][1] for index in range(6)] == written["labels"] == labels.tolist()
    mean, std = torch.tensor(CIFAR10DataModule.mean).view(3, 1, 1), torch.tensor(CIFAR10DataModule.std).view(3, 1, 1)
    assert torch.allclose(clean[2][0], (torch.from_numpy(images[2]).float() / 255 - mean) / std, atol=1e-6)


def test_a_cifar10c_cell_opens_its_file_only_when_read(tmp_path):
    folder = write_cifar_c(tmp_path, ["fog"])
    data = ready(CIFAR10CDataModule(root=str(tmp_path), corruptions=["fog"], severities=[3]))
    cell = data.cell_sets[0]
    assert cell.images is None and len(cell) == PER_SEVERITY
    image, label = cell[4]
    assert isinstance(cell.images, np.memmap) and type(label) is int and image.shape == (3, 32, 32)
    assert label == int(np.load(folder / "labels.npy")[2 * PER_SEVERITY + 4])


def test_positional_arguments_reach_the_base_datamodule(tmp_path):
    write_cifar10(tmp_path, per_batch=4, test=5)
    data = ready(CIFAR10DataModule(str(tmp_path), verify_checksums=False))
    assert data.root == str(tmp_path) and len(data.test_set) == 5


def test_an_empty_test_batch_loads_and_a_label_equal_to_the_class_count_is_refused(tmp_path):
    folder = write_cifar10(tmp_path, per_batch=4, test=5)
    rewrite_test_batch(folder, labels=[], data=np.zeros((0, 3072), np.uint8))
    assert len(ready(CIFAR10DataModule(root=str(tmp_path), verify_checksums=False)).test_set) == 0
    rewrite_test_batch(folder, labels=[0, 10, 9, 1, 2], data=np.zeros((5, 3072), np.uint8))
    with pytest.raises(CorruptDatasetFile) as refusal:
        ready(CIFAR10DataModule(root=str(tmp_path), verify_checksums=False))
    assert str(refusal.value).startswith(f"{folder}: labels reach 10, but there are 10 classes.")


def test_a_checksum_failure_and_a_premature_read_name_the_folder_and_the_dataset(tmp_path):
    folder = write_cifar10(tmp_path, per_batch=4, test=5)
    with pytest.raises(CorruptDatasetFile) as refusal:
        ready(CIFAR10DataModule(root=str(tmp_path), download=False))
    assert str(refusal.value).startswith(f"{folder}: ") and "verify_checksums: false" in str(refusal.value)
    with pytest.raises(DatasetFilesMissing) as refusal:
        CIFAR10DataModule(root=str(tmp_path / "empty"), download=False).load_split(train=True)
    assert str(refusal.value).startswith("CIFAR10: these files are missing from ")


def test_cifar10c_defaults_loader_settings_and_refusals_word_for_word(tmp_path):
    data = CIFAR10CDataModule()
    assert data.folder == Path("data") / "CIFAR-10-C" and data.download is False
    folder = write_cifar_c(tmp_path, ["fog"])
    data = ready(CIFAR10CDataModule(root=str(tmp_path), corruptions=["fog"], severities=[1], batch_size=7))
    assert data.test_dataloader()[0].batch_size == 7 and data.cell_sets[0].labels.dtype == torch.int64
    with pytest.raises(DatasetFilesMissing) as refusal:
        CIFAR10CDataModule(root=str(tmp_path), corruptions=["snow"]).prepare_data()
    lines = str(refusal.value).splitlines()
    assert lines[0] == f"CIFAR10CDataModule: these files are missing from {folder}:"
    assert lines[2].startswith("Download was not possible: download is off. The published archive is ")
    with pytest.raises(DatasetFilesMissing) as refusal:
        CIFAR10CDataModule(root=str(tmp_path), corruptions=["snow"]).cell_dataset("snow", 1)
    assert "Download was not possible: prepare_data() has not run, or could not fetch them. The" in str(refusal.value)
    np.save(folder / "labels.npy", np.full(5 * PER_SEVERITY, 10, np.uint8))
    with pytest.raises(CorruptDatasetFile) as refusal:
        ready(CIFAR10CDataModule(root=str(tmp_path), corruptions=["fog"]))
    assert str(refusal.value).startswith(f"{folder / 'labels.npy'}: labels reach 10")


def test_cifar10c_files_are_memory_mapped_and_an_empty_one_is_refused(tmp_path):
    from lit_vir.data.cifar10c import read_npy

    folder = write_cifar_c(tmp_path, ["fog"])
    assert isinstance(read_npy(folder / "fog.npy"), np.memmap)
    np.save(folder / "fog.npy", np.zeros((0, 32, 32, 3), np.uint8))
    with pytest.raises(CorruptDatasetFile, match="holds 0 images, not a positive multiple of 5"):
        ready(CIFAR10CDataModule(root=str(tmp_path), corruptions=["fog"]))


def test_the_clean_cell_downloads_cifar10_when_download_is_on(tmp_path, monkeypatch, served):
    write_cifar_c(tmp_path, ["fog"])
    monkeypatch.setattr(datasets.CIFAR10, "url", f"{served[1]}/nowhere.tar.gz")  # 404: the attempt is what counts
    data = CIFAR10CDataModule(root=str(tmp_path), corruptions=["fog"], include_clean=True, download=True)
    with pytest.raises(DatasetFilesMissing, match="Download was not possible: HTTPError: HTTP Error 404"):
        ready(data)


def test_the_clean_cell_does_not_download_when_download_is_off(tmp_path, monkeypatch, served):
    write_cifar_c(tmp_path, ["fog"])
    monkeypatch.setattr(datasets.CIFAR10, "url", f"{served[1]}/nowhere.tar.gz")  # nothing leaves this machine
    data = CIFAR10CDataModule(root=str(tmp_path), corruptions=["fog"], include_clean=True, download=False)
    with pytest.raises(DatasetFilesMissing, match="Download was not possible: download is off"):
        ready(data)
