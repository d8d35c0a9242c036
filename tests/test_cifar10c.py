"""CIFAR-10-C / CIFAR-100-C read the published .npy layout, slice severities, and give one test loader per
(corruption, severity) cell — on small files written here in that layout (N/5 rows per severity)."""

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from lit_vir.checks import ConfigError
from lit_vir.data import (
    BENCHMARK_CORRUPTIONS,
    CIFAR10CDataModule,
    CIFAR10DataModule,
    CIFAR100CDataModule,
    CorruptDatasetFile,
    DatasetFilesMissing,
)

PER_SEVERITY = 20


def write_cifar_c(
    root: Path, names: list[str], folder: str = "CIFAR-10-C", per_severity: int = PER_SEVERITY, classes: int = 10
) -> Path:
    """`<root>/<folder>/<name>.npy` uint8 (5·n, 32, 32, 3) and `labels.npy` uint8 (5·n,), as published.
    Pixel (0, 0) of every image encodes where it came from: red = corruption number, green = severity,
    blue = index within the severity block; the labels repeat per severity, as the 10,000 test labels do."""
    target = root / folder
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    block_labels = rng.integers(0, classes, size=per_severity)
    for number, name in enumerate(names):
        images = rng.integers(0, 256, size=(5 * per_severity, 32, 32, 3)).astype(np.uint8)
        for severity in range(1, 6):
            rows = slice((severity - 1) * per_severity, severity * per_severity)
            images[rows, 0, 0] = np.stack(
                [np.full(per_severity, number), np.full(per_severity, severity), np.arange(per_severity)], axis=1
            )
        np.save(target / f"{name}.npy", images)
    np.save(target / "labels.npy", np.tile(block_labels, 5).astype(np.uint8))
    return target


def ready(data, stage: str = "test"):
    data.prepare_data()
    data.setup(stage)
    return data


def raw_pixels(images: torch.Tensor, data) -> torch.Tensor:
    """Normalised images back to their uint8 values."""
    mean = torch.tensor(data.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.std).view(1, 3, 1, 1)
    return ((images * std + mean) * 255).round().to(torch.int64)


def test_each_cell_holds_its_severity_block_in_test_set_order(tmp_path):
    write_cifar_c(tmp_path, ["fog", "snow"])
    data = ready(CIFAR10CDataModule(root=str(tmp_path), corruptions=["fog", "snow"], severities=[2, 5]))
    assert data.cells == [("fog", 2), ("fog", 5), ("snow", 2), ("snow", 5)]
    loaders = data.test_dataloader()
    assert len(loaders) == len(data.cells)
    for (name, severity), loader in zip(data.cells, loaders, strict=True):
        images, _ = next(iter(loader))
        origin = raw_pixels(images, data)[:, :, 0, 0]  # (B, 3): corruption number, severity, index
        assert images.shape == (PER_SEVERITY, 3, 32, 32) and images.dtype == torch.float32
        assert origin[:, 0].eq(["fog", "snow"].index(name)).all() and origin[:, 1].eq(severity).all()
        assert origin[:, 2].tolist() == list(range(PER_SEVERITY))


def test_labels_come_from_labels_npy_for_the_same_rows(tmp_path):
    folder = write_cifar_c(tmp_path, ["contrast"])
    data = ready(CIFAR10CDataModule(root=str(tmp_path), corruptions=["contrast"], severities=[4], batch_size=7))
    labels = torch.cat([batch_labels for _, batch_labels in data.test_dataloader()[0]])
    expected = np.load(folder / "labels.npy")[3 * PER_SEVERITY : 4 * PER_SEVERITY]
    assert labels.dtype == torch.int64 and labels.tolist() == expected.tolist()


def test_images_are_normalised_like_cifar10(tmp_path):
    folder = write_cifar_c(tmp_path, ["fog"])
    data = ready(CIFAR10CDataModule(root=str(tmp_path), corruptions=["fog"], severities=[1]))
    image, _ = data.cell_sets[0][3]
    raw = torch.from_numpy(np.load(folder / "fog.npy")[3]).permute(2, 0, 1).float() / 255
    mean = torch.tensor(CIFAR10DataModule.mean).view(3, 1, 1)
    std = torch.tensor(CIFAR10DataModule.std).view(3, 1, 1)
    assert torch.allclose(image, (raw - mean) / std, atol=1e-5)


def test_the_default_is_the_15_benchmark_corruptions_at_5_severities(tmp_path):
    data = CIFAR10CDataModule(root=str(tmp_path))
    assert data.cells == [(name, severity) for name in BENCHMARK_CORRUPTIONS for severity in range(1, 6)]


def test_missing_files_are_named_with_the_folder_and_the_archive_url(tmp_path):
    write_cifar_c(tmp_path, ["fog"])
    data = CIFAR10CDataModule(root=str(tmp_path), corruptions=["fog", "snow", "frost"])
    with pytest.raises(DatasetFilesMissing) as error:
        data.prepare_data()
    message = str(error.value)
    folder = tmp_path / "CIFAR-10-C"
    assert str(folder / "snow.npy") in message and str(folder / "frost.npy") in message
    assert str(folder / "fog.npy") not in message
    assert "https://zenodo.org/records/2535967" in message


def test_missing_labels_are_named(tmp_path):
    (write_cifar_c(tmp_path, ["fog"]) / "labels.npy").unlink()
    with pytest.raises(DatasetFilesMissing, match=r"labels\.npy"):
        ready(CIFAR10CDataModule(root=str(tmp_path), corruptions=["fog"]))


def test_a_failed_download_reports_the_files_and_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(CIFAR10CDataModule, "archive_url", f"file://{tmp_path}/no-such-archive.tar")
    data = CIFAR10CDataModule(root=str(tmp_path / "root"), corruptions=["fog"], download=True)
    with pytest.raises(DatasetFilesMissing, match=r"(?s)fog\.npy.*Download was not possible"):
        data.prepare_data()


@pytest.mark.parametrize(
    ("array", "problem"),
    [
        (np.zeros((100, 32, 32), np.uint8), r"uint8 \(100, 32, 32\), expected uint8 \(N, 32, 32, 3\)"),
        (np.zeros((100, 28, 28, 3), np.uint8), r"uint8 \(100, 28, 28, 3\), expected uint8 \(N, 32, 32, 3\)"),
        (np.zeros((100, 32, 32, 3), np.float32), r"float32 \(100, 32, 32, 3\), expected uint8"),
        (np.zeros((99, 32, 32, 3), np.uint8), "99 images, not a positive multiple of 5"),
    ],
)
def test_a_corruption_file_of_the_wrong_shape_is_reported_by_path(tmp_path, array, problem):
    folder = write_cifar_c(tmp_path, ["fog"])
    np.save(folder / "fog.npy", array)
    with pytest.raises(CorruptDatasetFile, match=rf"fog\.npy: holds {problem}"):
        ready(CIFAR10CDataModule(root=str(tmp_path), corruptions=["fog"]))


def test_a_file_that_is_not_npy_is_reported_by_path(tmp_path):
    folder = write_cifar_c(tmp_path, ["fog"])
    (folder / "fog.npy").write_bytes(b"not an array")
    with pytest.raises(CorruptDatasetFile, match=r"fog\.npy: cannot be read as a \.npy array"):
        ready(CIFAR10CDataModule(root=str(tmp_path), corruptions=["fog"]))


def test_labels_that_do_not_match_the_images_are_refused(tmp_path):
    folder = write_cifar_c(tmp_path, ["fog"])
    np.save(folder / "labels.npy", np.zeros(5 * PER_SEVERITY - 5, np.uint8))
    with pytest.raises(CorruptDatasetFile, match=r"labels\.npy: holds labels of shape \(95,\), but the images are 100"):
        ready(CIFAR10CDataModule(root=str(tmp_path), corruptions=["fog"]))


def test_labels_beyond_the_classes_are_refused(tmp_path):
    folder = write_cifar_c(tmp_path, ["fog"])
    np.save(folder / "labels.npy", np.full(5 * PER_SEVERITY, 10, np.uint8))
    with pytest.raises(CorruptDatasetFile, match="labels reach 10, but there are 10 classes"):
        ready(CIFAR10CDataModule(root=str(tmp_path), corruptions=["fog"]))


@pytest.mark.parametrize("stage", ["fit", "validate"])
def test_it_is_for_testing_only(tmp_path, stage):
    write_cifar_c(tmp_path, ["fog"])
    with pytest.raises(ConfigError, match=f"only corrupted test images, so it cannot be used to {stage}"):
        ready(CIFAR10CDataModule(root=str(tmp_path), corruptions=["fog"]), stage)


def test_cifar100c_reads_its_own_folder_with_100_classes_and_cifar100_normalisation(tmp_path):
    folder = write_cifar_c(tmp_path, ["fog"], folder="CIFAR-100-C", classes=100)
    data = ready(CIFAR100CDataModule(root=str(tmp_path), corruptions=["fog"], severities=[3]))
    images, labels = next(iter(data.test_dataloader()[0]))
    assert data.num_classes == 100 and (data.mean, data.std) == ((0.5,) * 3, (0.5,) * 3)  # the reference's CIFAR-100
    assert raw_pixels(images, data)[:, 1, 0, 0].eq(3).all()
    written = np.load(folder / "labels.npy")[2 * PER_SEVERITY : 3 * PER_SEVERITY]  # severity 3's block
    assert labels.tolist() == written.tolist() and written.max() >= 10  # labels a 10-class reading would change


def test_a_custom_folder_name_is_read(tmp_path):
    write_cifar_c(tmp_path, ["fog"], folder="my-cifar-c")
    data = ready(CIFAR10CDataModule(root=str(tmp_path), corruptions=["fog"], folder="my-cifar-c"))
    assert len(data.cell_sets[0]) == PER_SEVERITY


class CellRecorder(L.LightningModule):
    """Records, per test batch, its dataloader_idx and the (corruption number, severity) its images encode."""

    def __init__(self, data: CIFAR10CDataModule) -> None:
        super().__init__()
        self.data = data
        self.layer = torch.nn.Linear(1, 1)
        self.seen: set[tuple[int, int, int]] = set()

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        origins = raw_pixels(batch[0], self.data)[:, :2, 0, 0].unique(dim=0).tolist()
        self.seen |= {(dataloader_idx, number, severity) for number, severity in origins}


def test_lightning_tests_every_cell_and_its_dataloader_idx_names_the_cell(tmp_path):
    names = ["fog", "snow"]
    write_cifar_c(tmp_path, names)
    data = CIFAR10CDataModule(root=str(tmp_path), corruptions=names, severities=[1, 4], batch_size=8)
    recorder = CellRecorder(data)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(recorder, datamodule=data)
    expected = {(index, names.index(name), severity) for index, (name, severity) in enumerate(data.cells)}
    assert recorder.seen == expected
