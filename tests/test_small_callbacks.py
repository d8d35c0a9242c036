"""Three small callbacks in real Trainer runs: AlphaLogger (ReViT's α in TensorBoard), ReservoirChecksum (the
reservoirs every rank drew) and CacheReservoirStates (its refusals and its memory check, against hand counts)."""

from __future__ import annotations

import logging

import lightning as L
import pytest
import torch
from torch import nn

from lit_vir.checks import ConfigError
from lit_vir.data import DigitsDataModule
from lit_vir.models import ViR
from lit_vir.training.callbacks import state_cache
from lit_vir.training.callbacks.reservoir_checksum import ReservoirChecksum
from lit_vir.training.callbacks.revit import AlphaLogger
from lit_vir.training.callbacks.state_cache import CacheReservoirStates, available_memory
from lit_vir.training.guards import reservoir_checksum
from lit_vir.training.module import ImageClassifier
from tests.callback_runs import Tiny, logged, logged_fit


class WithAlphas(nn.Module):
    """A backbone with scalar parameters named alpha (top level and in a block), one vector named alpha and one
    scalar named otherwise: only the scalars named alpha are ReViT's α."""

    def __init__(self) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(0.5))
        self.block = nn.Module()
        self.block.alpha = nn.Parameter(torch.tensor(0.25), requires_grad=False)  # a fixed α is logged too
        self.blocks = nn.ModuleList([nn.Module()])
        self.blocks[0].alpha = nn.Parameter(torch.tensor(0.75), requires_grad=False)  # named blocks.0.alpha
        self.vector = nn.Module()
        self.vector.alpha = nn.Parameter(torch.tensor([1.0, 2.0]))
        self.beta = nn.Parameter(torch.tensor(3.0))
        self.linear = nn.Linear(4, 3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.flatten(1)) * self.alpha + self.beta * self.vector.alpha.sum()


class TinyWithAlphas(Tiny):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = WithAlphas()


def four_values(count: int = 12) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.rand(count, 1, 2, 2, generator=generator), torch.arange(count) % 3)
    return torch.utils.data.DataLoader(data, batch_size=4)


def test_alpha_logger_logs_each_scalar_alpha_at_each_epochs_end(tmp_path):
    model = TinyWithAlphas()
    seen = []

    class Watch(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen.append(pl_module.backbone.alpha.item())

    rows = logged_fit(tmp_path, AlphaLogger(), model, four_values(), max_epochs=3)
    trainer_rows = [row for row in rows if row.get("backbone/alpha")]
    assert len(trainer_rows) == 3
    assert logged(rows, "backbone/block.alpha") == [0.25, 0.25, 0.25]
    assert logged(rows, "backbone/blocks.0.alpha") == [0.75, 0.75, 0.75]
    assert {key for row in rows for key, value in row.items() if key.startswith("backbone/") and value} == {
        "backbone/alpha",
        "backbone/block.alpha",
        "backbone/blocks.0.alpha",
    }
    # α is trained: each epoch's value is the parameter at that epoch's end (the last one: the final weights)
    assert logged(rows, "backbone/alpha")[-1] == pytest.approx(model.backbone.alpha.item(), abs=1e-7)
    assert len(set(logged(rows, "backbone/alpha"))) == 3
    model = TinyWithAlphas()
    with_watch = L.Trainer(
        max_epochs=2,
        logger=False,
        callbacks=[AlphaLogger(), Watch()],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with_watch.fit(model, four_values())
    assert len(seen) == 2 and seen[-1] == model.backbone.alpha.item()


def test_alpha_logger_warns_when_the_backbone_has_no_alpha(tmp_path):
    with pytest.warns(UserWarning, match=r"^AlphaLogger: Sequential has no scalar parameter named alpha\.$"):
        rows = logged_fit(tmp_path, AlphaLogger(), Tiny(), four_values(), max_epochs=1)
    assert not any(key.startswith("backbone/") for row in rows for key in row)


def tiny_vir(**options) -> ViR:
    return ViR(10, 8, 1, patch_size=2, embed_dim=8, mlp_dim=8, num_nodes=16, jump_size=3, **options)


def fit_digits(
    callback: L.Callback, backbone: nn.Module, augment: bool = False, datamodule: L.LightningDataModule | None = None
) -> ImageClassifier:
    """Two training batches of 16 digits (20% test, 10% validation, not validated) with `callback`, or of
    `datamodule` where one is given."""
    model = ImageClassifier(backbone)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    digits = DigitsDataModule(batch_size=16, augment=augment, val_size=0.1, test_size=0.2)
    trainer.fit(model, datamodule=datamodule or digits)
    return model


def test_the_reservoir_checksum_is_logged_for_the_rank_and_nothing_is_gathered_alone(caplog):
    with caplog.at_level(logging.INFO, logger="lit_vir.training.callbacks.reservoir_checksum"):
        model = fit_digits(ReservoirChecksum(), tiny_vir(seed=5))
    expected = f"rank 0: reservoir checksum {reservoir_checksum(model):016x}"
    assert [record.getMessage() for record in caplog.records if "checksum" in record.getMessage()] == [expected]
    other = ImageClassifier(tiny_vir(seed=6))
    assert reservoir_checksum(other) != reservoir_checksum(model)  # the seed draws the reservoirs


def test_cache_options_are_checked_with_their_range():
    with pytest.raises(ConfigError, match=r"^CacheReservoirStates: dtype = 'int8' is not one of"):
        CacheReservoirStates(dtype="int8")
    for fraction in (0.0, 1.5):
        with pytest.raises(ConfigError, match=rf"CacheReservoirStates: memory_fraction = {fraction} is outside"):
            CacheReservoirStates(memory_fraction=fraction)
    cache = CacheReservoirStates(dtype="bfloat16", memory_fraction=1.0)
    assert (cache.dtype, cache.memory_fraction) == (torch.bfloat16, 1.0)
    assert (CacheReservoirStates().dtype, CacheReservoirStates().memory_fraction) == (torch.float32, 0.8)


def test_the_cache_refuses_a_backbone_without_states_and_augmented_data():
    with pytest.raises(ConfigError) as refusal:
        fit_digits(CacheReservoirStates(), nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    assert str(refusal.value) == "CacheReservoirStates: the backbone Sequential has no reservoir states to cache."
    with pytest.raises(ConfigError) as refusal:
        fit_digits(CacheReservoirStates(), tiny_vir(), augment=True)
    assert str(refusal.value) == (
        "CacheReservoirStates: the training transform must be fixed; set data.init_args.augment: false."
    )


def test_the_cache_takes_memory_up_to_its_fraction_of_what_is_free_and_frees_it_at_the_end(monkeypatch):
    """Digits: 1797 images, 359 (20%) for the test, 144 (10% of the 1438 left, rounded) for validation → 1294
    training images; a tiny ViR holds 1 core × 16 tokens × 16 nodes per image: 1294 × (256 × 4 bytes + an 8-byte
    key) = 1,335,408 bytes in float32, 1294 × (256 × 2 + 8) = 672,880 in bfloat16."""
    needed = {torch.float32: 1294 * (16 * 16 * 4 + 8), torch.bfloat16: 1294 * (16 * 16 * 2 + 8)}
    caches = []
    original = ViR.enable_state_cache

    def recording(self, capacity, dtype=torch.float32):
        cache = original(self, capacity, dtype)
        caches.append((capacity, dtype, cache))
        return cache

    monkeypatch.setattr(ViR, "enable_state_cache", recording)
    for dtype in (torch.float32, torch.bfloat16):
        monkeypatch.setattr(state_cache, "available_memory", lambda device, dtype=dtype: 2 * needed[dtype])
        model = fit_digits(
            CacheReservoirStates(dtype=str(dtype).removeprefix("torch."), memory_fraction=0.5), tiny_vir()
        )  # needed = 0.5 × free exactly: accepted
        assert caches[-1][:2] == (1294, dtype) and model.backbone.state_cache is None  # freed at the fit's end
        assert caches[-1][2].count == 2 * 16  # the two training batches were cached
    monkeypatch.setattr(state_cache, "available_memory", lambda device: 2 * needed[torch.float32] - 2)
    with pytest.raises(ConfigError) as refusal:
        fit_digits(CacheReservoirStates(memory_fraction=0.5), tiny_vir())
    free = (2 * needed[torch.float32] - 2) / 2**30
    assert str(refusal.value) == (
        f"CacheReservoirStates: caching 1294 images × (1, 16, 16) states in torch.float32 needs 0.00 GiB, but "
        f"{free:.2f} GiB is free on cpu (limit memory_fraction = 0.5). Use dtype: bfloat16, a smaller model, or "
        "train without the cache."
    )


def test_free_memory_on_the_cpu_is_the_available_physical_pages():
    import os

    expected = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert abs(available_memory(torch.device("cpu")) - expected) < 2**28  # two reads a moment apart


class TwoRanks:
    """A stand-in for a 2-process strategy's `all_gather` (a mock: the real 2-process gloo run is in
    test_reliability.py, which runs the installed lit-vir and so cannot see a mutated copy): it stacks this rank's
    tensor with the other rank's value, and records what it was given."""

    def __init__(self, other: int) -> None:
        self.other, self.given = other, []

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        self.given.append(tensor)
        return torch.stack([tensor, torch.tensor(self.other, dtype=tensor.dtype)])


def test_under_two_ranks_the_checksums_are_gathered_and_a_difference_stops_the_run(caplog):
    from types import SimpleNamespace

    from lit_vir.training.guards import ReservoirMismatchError

    model = ImageClassifier(tiny_vir(seed=5))
    own = reservoir_checksum(model)
    same = TwoRanks(own)
    ReservoirChecksum().setup(SimpleNamespace(world_size=2, global_rank=1, strategy=same), model, "fit")
    (given,) = same.given
    assert given.dtype == torch.int64 and given.device == model.device and int(given) == own
    other = reservoir_checksum(ImageClassifier(tiny_vir(seed=6)))
    with pytest.raises(ReservoirMismatchError, match=f"rank 0: {own:016x}, rank 1: {other:016x}"):
        ReservoirChecksum().setup(SimpleNamespace(world_size=2, global_rank=0, strategy=TwoRanks(other)), model, "fit")
    alone = TwoRanks(other)
    ReservoirChecksum().setup(SimpleNamespace(world_size=1, global_rank=0, strategy=alone), model, "fit")
    assert alone.given == []  # one process: nothing to compare


def test_the_cache_takes_float16_states_and_refuses_a_datamodule_silent_about_augmentation():
    assert CacheReservoirStates(dtype="float16").dtype == torch.float16

    class Unknown(L.LightningDataModule):
        """A datamodule without an `augment` attribute: the cache cannot know the transform is fixed."""

        def train_dataloader(self):
            images = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.zeros(16).long()))

    with pytest.raises(ConfigError, match=r"set data\.init_args\.augment: false"):
        fit_digits(CacheReservoirStates(), tiny_vir(), datamodule=Unknown())


def test_the_cache_messages_give_gibibytes(monkeypatch, caplog):
    """3 GiB needed against 2 GiB free is refused in those words; against 10 GiB it is reported in GiB."""
    monkeypatch.setattr(state_cache.ReservoirStateCache, "bytes_needed", staticmethod(lambda *args: 3 * 2**30))
    monkeypatch.setattr(state_cache, "available_memory", lambda device: 2 * 2**30)
    with pytest.raises(ConfigError, match=r"needs 3\.00 GiB, but 2\.00 GiB is free on cpu \(limit memory_fraction"):
        fit_digits(CacheReservoirStates(memory_fraction=1.0), tiny_vir())
    monkeypatch.setattr(state_cache, "available_memory", lambda device: 10 * 2**30)
    with caplog.at_level(logging.INFO):
        fit_digits(CacheReservoirStates(), tiny_vir())
    assert "CacheReservoirStates: 3.00 GiB for the states of 1294 training images." in caplog.text
