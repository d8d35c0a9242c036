"""CorruptedDataModule and its base, CorruptionBenchmarkDataModule, in the parts the cell tests of
test_corruptions.py leave out: the seed of each chunk (pinned: it fixes every published corruption number), what
a chunk holds, the refusals word for word, the loaders and what the wrapper passes on from the dataset."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch
from torch.utils.data import DataLoader

from lit_vir.checks import ConfigError
from lit_vir.data import CorruptedDataModule, DigitsDataModule, corrupt
from lit_vir.data.corrupted import CLEAN, CorruptedSplit, CorruptionBenchmarkDataModule, chunk_seed
from lit_vir.data.corruptions import BENCHMARK_CORRUPTIONS


def test_chunk_seeds_are_pinned_63_bit_blake2b_values():
    """Pinned values: the seeds fix every corrupted image of a published robustness table, so a change of the
    hash, its size, its byte order or its string shows here. The second form recomputes one from its definition
    (the first 8 bytes of BLAKE2b over "seed/corruption/severity/chunk", little-endian, top bit dropped)."""
    assert chunk_seed(0, "fog", 3, 2) == 4625417256517447328
    assert chunk_seed(7, "gaussian_noise", 1, 0) == 8604715971701152662
    digest = hashlib.blake2b(b"1/snow/5/9", digest_size=8).digest()
    assert chunk_seed(1, "snow", 5, 9) == int.from_bytes(digest, "little") // 2 < 2**63


def test_a_chunk_is_its_images_corrupted_with_the_chunk_seed_then_normalised():
    images = torch.rand(7, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(7)
    split = CorruptedSplit(images, labels, "gaussian_noise", 2, 5, lambda batch: batch * 10 - 1, chunk_size=3)
    assert len(split) == 7
    for number, rows in ((0, slice(0, 3)), (2, slice(6, 7)), (1, slice(3, 6))):
        generator = torch.Generator().manual_seed(chunk_seed(5, "gaussian_noise", 2, number))
        expected = corrupt(images[rows], "gaussian_noise", 2, generator) * 10 - 1
        assert torch.equal(split.chunk(number), expected)
    image, label = split[4]  # chunk 1, offset 1
    assert torch.equal(image, split.chunk(1)[1]) and label == 4 and type(label) is int


def test_a_chunk_is_corrupted_once_while_it_is_read_in_order(monkeypatch):
    import lit_vir.data.corrupted as corrupted_module

    calls = []

    def counting(images, *args):
        calls.append(len(images))
        return corrupt(images, *args)

    monkeypatch.setattr(corrupted_module, "corrupt", counting)
    split = CorruptedSplit(torch.rand(5, 1, 4, 4), torch.zeros(5), "contrast", 1, 0, lambda batch: batch, 2)
    for index in range(5):
        split[index]
    assert calls == [2, 2, 1]


def test_the_base_class_refuses_training_and_validation_and_names_what_to_do():
    data = CorruptedDataModule(DigitsDataModule(), corruptions=["fog"], severities=[1])
    message = (
        "CorruptedDataModule holds only corrupted test images, so it cannot be used to {}. Train on the clean "
        "dataset, then test the checkpoint with this datamodule (`lit-vir test ... --ckpt_path <checkpoint>`)."
    )
    for stage in ("fit", "validate"):
        with pytest.raises(ConfigError) as refusal:
            data.setup(stage)
        assert str(refusal.value) == message.format(stage)
    with pytest.raises(ConfigError) as refusal:
        data.load_split(train=True)
    assert str(refusal.value) == message.format("fit")
    with pytest.raises(RuntimeError, match=r"^CorruptedDataModule: setup\('test'\) has not built the cells yet\.$"):
        data.test_dataloader()


def test_repeated_or_empty_corruptions_and_severities_are_refused_by_name():
    with pytest.raises(ConfigError) as refusal:
        CorruptedDataModule(DigitsDataModule(), corruptions=["fog", "snow", "fog"])
    assert str(refusal.value) == (
        "CorruptedDataModule: corruptions = ['fog', 'snow', 'fog'] must be non-empty, without repeats."
    )
    with pytest.raises(ConfigError) as refusal:
        CorruptedDataModule(DigitsDataModule(), corruptions=[])
    assert str(refusal.value) == "CorruptedDataModule: corruptions = [] must be non-empty, without repeats."
    with pytest.raises(ConfigError) as refusal:
        CorruptedDataModule(DigitsDataModule(), severities=[])
    assert str(refusal.value) == "CorruptedDataModule: severities = [] must be non-empty, without repeats."
    with pytest.raises(ConfigError, match=r"CorruptedDataModule: severities = 0 is outside .*1 is mildest\."):
        CorruptedDataModule(DigitsDataModule(), severities=[0])


def test_load_split_is_every_cell_in_order_and_predict_uses_the_test_loaders():
    data = CorruptedDataModule(DigitsDataModule(), corruptions=["contrast", "fog"], severities=[2], batch_size=50)
    concatenated = data.load_split(train=False)  # sets up the cells itself
    assert [cell for cell in data.cells] == [(CLEAN, 0), ("contrast", 2), ("fog", 2)]
    assert len(concatenated) == 3 * 359
    for cell, cell_set in enumerate(data.cell_sets):
        for index in (0, 358):
            image, label = concatenated[cell * 359 + index]
            assert torch.equal(image, cell_set[index][0]) and label == cell_set[index][1]
    loaders = data.predict_dataloader()
    assert [loader.dataset for loader in loaders] == data.cell_sets
    assert all(isinstance(loader, DataLoader) and loader.batch_size == 50 for loader in loaders)
    first_batch = next(iter(loaders[1]))[0]
    assert torch.equal(first_batch, torch.stack([data.cell_sets[1][index][0] for index in range(50)]))  # in order


def test_the_wrapper_takes_root_download_and_transforms_from_its_dataset_and_reads_it_once(tmp_path, monkeypatch):
    dataset = DigitsDataModule(root=str(tmp_path), download=True)
    data = CorruptedDataModule(dataset, corruptions=["contrast"], severities=[1, 2], seed=3, batch_size=9)
    assert (data.root, data.download, data.seed, data.batch_size) == (str(tmp_path), True, 3, 9)
    assert data.cells[0] == (CLEAN, 0)  # clean included by default here, unlike the base class
    assert data.preprocessing() == dataset.preprocessing()
    assert type(data.pixel_transform()) is type(dataset.pixel_transform())
    reads = []
    original = dataset.load_split
    monkeypatch.setattr(dataset, "load_split", lambda train: reads.append(train) or original(train))
    data.setup("test")
    assert reads == [False]
    images, labels = data.clean_test_split()
    assert images.shape == (359, 1, 8, 8) and labels.dtype == torch.int64
    assert labels.tolist() == [int(dataset.load_split(train=False)[index][1]) for index in range(359)]
    assert data.cell_sets[1].seed == 3 and data.cell_sets[2].severity == 2


@pytest.mark.skipif("MUTANT_UNDER_TEST" in os.environ, reason="save_hyperparameters sees no frame under mutmut")
def test_the_saved_hyperparameters_hold_the_seed_and_not_the_dataset():
    data = CorruptedDataModule(DigitsDataModule(), corruptions=["contrast"], seed=3)
    assert data.hparams["seed"] == 3 and "dataset" not in data.hparams


def test_the_benchmark_base_class_leaves_the_clean_cell_out_unless_asked():
    class Cells(CorruptionBenchmarkDataModule):
        def cell_dataset(self, corruption, severity):
            return [(corruption, severity)]

        def clean_dataset(self):
            return [(CLEAN, 0)]

    assert Cells().cells == [(name, severity) for name in BENCHMARK_CORRUPTIONS for severity in (1, 2, 3, 4, 5)]
    data = Cells(corruptions=["snow"], severities=[4, 2], include_clean=True, batch_size=5)
    assert data.cells == [(CLEAN, 0), ("snow", 4), ("snow", 2)]
    data.setup("test")
    assert data.cell_sets == [[(CLEAN, 0)], [("snow", 4)], [("snow", 2)]]
    data.setup("test")  # built once
    assert [loader.batch_size for loader in data.test_dataloader()] == [5, 5, 5]


def test_the_benchmark_defaults_are_the_test_settings_and_download_stays_off():
    class Cells(CorruptionBenchmarkDataModule):
        def cell_dataset(self, corruption, severity):
            return []

        def clean_dataset(self):
            return []

    data = Cells()
    settings = (data.root, data.batch_size, data.num_workers, data.pin_memory, data.download)
    assert settings == ("data", 100, 0, False, False)  # the published files are large: no download unless asked
    assert CorruptedDataModule(DigitsDataModule()).seed == 0


def test_bad_names_and_severities_are_refused_with_the_owner_and_the_hint():
    with pytest.raises(ConfigError, match=r"^CorruptedDataModule: corruptions = 'fogg' is not one of 'gaussian_noise'"):
        CorruptedDataModule(DigitsDataModule(), corruptions=["fogg"])
    with pytest.raises(ConfigError, match=r"^CorruptedDataModule: severities = 6 is outside .*\. 1 is mildest\.$"):
        CorruptedDataModule(DigitsDataModule(), severities=[6])
