"""The ReservoirDynamics callback: what it writes to TensorBoard in real runs, and what it must leave alone."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from sklearn.datasets import load_digits
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_vir.cli import build_from_config, main
from lit_vir.commands.common import datamodule_from_configs
from lit_vir.models import ViR
from lit_vir.training import ImageClassifier
from lit_vir.training.callbacks.dynamics import SMALL_WORLD_SCALARS, ReservoirDynamics
from lit_vir.training.checkpoints import load_classifier
from tests.analysis_reference import assert_core_fields_match
from tests.analysis_reference import expected_records as reference_records
from tests.conftest import CONFIGS, QUICK_TRAINER, TINY_VIR
from tests.fakedata import write_mnist

PIECE = CONFIGS / "callbacks" / "dynamics.yaml"
QUICK_DYNAMICS = [
    "--trainer.callbacks.init_args.every_n_epochs",
    "1",
    "--trainer.callbacks.init_args.max_delay",
    "20",
    "--trainer.callbacks.init_args.num_images",
    "3",
    "--trainer.callbacks.init_args.path_sources",
    "10",
]
DRIVEN = ("lyapunov_jacobian", "lyapunov_perturbation", "state_mean_abs", "state_saturated_fraction")
ONCE = ("spectral_radius", "memory_capacity", *SMALL_WORLD_SCALARS)


def read_events(run: Path) -> EventAccumulator:
    events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events


def fit_on_mnist(tmp_path: Path, monkeypatch, *args: str) -> Path:
    write_mnist(tmp_path / "data", train=200, test=50)
    monkeypatch.chdir(tmp_path)
    main(
        ["fit", "-c", str(CONFIGS / "vir.yaml"), *TINY_VIR, *QUICK_TRAINER, "--data.init_args.download", "false", *args]
    )
    return tmp_path / "logs" / "vir-mnist" / "version_0"


def test_serial_vir_run_logs_every_core_at_fit_start_and_each_epoch(tmp_path, monkeypatch):
    run = fit_on_mnist(
        tmp_path,
        monkeypatch,
        "--model.backbone.init_args.depth=2",
        "--model.backbone.init_args.mode=serial",
        "--trainer.max_epochs=2",
        f"--trainer.callbacks+={PIECE}",
        *QUICK_DYNAMICS,
    )
    events = read_events(run)
    scalars, images = set(events.Tags()["scalars"]), set(events.Tags()["images"])
    assert {"val/acc", "params/trainable"} <= scalars  # the default callbacks and logging survive the append
    assert any(path.suffix == ".ckpt" for path in (run / "checkpoints").iterdir())
    for core in ("core0", "core1"):
        assert {f"dynamics/{core}/{name}" for name in DRIVEN + ONCE} <= scalars
        assert {f"dynamics/{core}/{name}" for name in ("spectrum", "memory", "states")} <= images
        assert len(events.Scalars(f"dynamics/{core}/lyapunov_perturbation")) == 3  # fit start + 2 epochs
        assert len(events.Scalars(f"dynamics/{core}/memory_capacity")) == 1  # W never trains: logged once
        assert len(events.Images(f"dynamics/{core}/states")) == 3
    first, *_ = events.Images("dynamics/core0/spectrum")
    assert first.width > 100 and first.height > 100  # a figure was drawn, not an empty image; its numbers: below
    # the scalars against the same quantities computed here: the W-only ones once, the driven ones of the last
    # epoch from the final weights (last.ckpt) and the first 3 validation images (serial core 1 reads core 0's z)
    final = expected_records(load_classifier(run / "checkpoints" / "last.ckpt").backbone, validation_images(run, 3))
    check_logged(events, final, DRIVEN + ONCE, index=-1)


def test_parallel_bank_logs_each_of_its_reservoirs(tmp_path, monkeypatch):
    run = fit_on_mnist(
        tmp_path,
        monkeypatch,
        "--model.backbone.init_args.depth=2",
        "--trainer.callbacks+=lit_vir.training.callbacks.dynamics.ReservoirDynamics",
        *QUICK_DYNAMICS,
        "--trainer.callbacks.init_args.memory=false",
        "--trainer.callbacks.init_args.small_world=false",
        "--trainer.callbacks.init_args.figures=false",
    )
    events = read_events(run)
    scalars = set(events.Tags()["scalars"])
    assert {f"dynamics/core{i}/{name}" for i in (0, 1) for name in (*DRIVEN, "spectral_radius")} <= scalars
    assert not {f"dynamics/core0/{name}" for name in ("memory_capacity", "weighted_sigma")} & scalars
    assert not events.Tags()["images"]
    # at fit start the model as the config builds it (seed_everything 42), after the epoch the final weights
    images = validation_images(run, 3)
    config = ["-c", str(CONFIGS / "vir.yaml"), *TINY_VIR, "--model.backbone.init_args.depth=2"]
    initial = expected_records(build_from_config(config)[0].backbone, images)
    check_logged(events, initial, (*DRIVEN, "spectral_radius"), index=0)
    final = expected_records(load_classifier(run / "checkpoints" / "last.ckpt").backbone, images)
    check_logged(events, final, DRIVEN, index=-1)
    assert initial[0]["lyapunov_perturbation"] != initial[1]["lyapunov_perturbation"]  # two reservoirs


def validation_images(run: Path, count: int) -> torch.Tensor:
    """The first `count` images of the run's validation split, read here from its saved config."""
    data = datamodule_from_configs([run / "config.yaml"])
    data.setup("fit")
    return torch.stack([data.val_set[index][0] for index in range(count)])


def check_logged(events: EventAccumulator, expected: list[dict], names: tuple[str, ...], index: int) -> None:
    """The `index`-th logged value of each field of each core against its expected value (`QUICK_DYNAMICS`
    budgets; TensorBoard keeps float32)."""
    for core, fields in enumerate(expected):
        logged = {name: events.Scalars(f"dynamics/core{core}/{name}")[index].value for name in names}
        assert_core_fields_match(logged, {name: fields[name] for name in names}, relative=1e-6)


def expected_records(model: ViR, images: torch.Tensor) -> list[dict]:
    return reference_records(model, images, max_delay=20, path_sources=10)


class FlatBackbone(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(nn.Flatten(), nn.Linear(64, 10))


def test_non_vir_backbone_is_skipped_with_one_info_message(tmp_path, caplog):
    trainer = L.Trainer(logger=TensorBoardLogger(tmp_path), accelerator="cpu", enable_progress_bar=False)
    module = ImageClassifier(FlatBackbone())
    callback = ReservoirDynamics()
    with caplog.at_level(logging.INFO):
        callback.on_fit_start(trainer, module)
        callback.on_train_epoch_end(trainer, module)
    assert [record.getMessage() for record in caplog.records if "ReservoirDynamics" in record.getMessage()] == [
        "ReservoirDynamics: the backbone is a FlatBackbone, not a ViR: no reservoir dynamics to log."
    ]
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


class GlobalRandomDigits(L.LightningDataModule):
    """scikit-learn's digits in plain DataLoaders that draw from the global random stream, as many datamodules do."""

    def setup(self, stage: str) -> None:
        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (n, 1, 8, 8)
        self.dataset = TensorDataset(images, torch.tensor(digits.target))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=32, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=32, shuffle=True)


def train_on_digits(tmp_path: Path, callbacks: list[L.Callback]) -> dict[str, torch.Tensor]:
    """One short seeded fit; the weights it ends with."""
    L.seed_everything(7)
    backbone = ViR(10, 8, 1, patch_size=2, embed_dim=16, num_nodes=30, jump_size=4, mlp_dim=32, dropout=0.1)
    module = ImageClassifier(backbone)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        limit_train_batches=3,
        limit_val_batches=1,
        logger=TensorBoardLogger(tmp_path),
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=GlobalRandomDigits())
    return {name: value.clone() for name, value in module.state_dict().items()}


def test_training_is_identical_with_and_without_the_callback(tmp_path):
    """The callback draws no global random numbers, even from a loader that does: shuffling and dropout see the
    same streams with and without it."""
    plain = train_on_digits(tmp_path / "plain", [])
    monitored = train_on_digits(tmp_path / "monitored", [ReservoirDynamics(max_delay=10, path_sources=10)])
    assert plain.keys() == monitored.keys()
    assert all(torch.equal(plain[name], monitored[name]) for name in plain)


@pytest.mark.slow
def test_ddp_run_logs_from_rank_zero_and_finishes(tmp_path, run_cli):
    """Two CPU processes (gloo): rank zero analyses while rank one waits at its next collective; neither hangs."""
    write_mnist(tmp_path / "data", train=200, test=40)
    run_cli(
        "fit",
        "-c",
        str(CONFIGS / "vir.yaml"),
        *TINY_VIR,
        *QUICK_TRAINER,
        "--data.init_args.download=false",
        "--data.init_args.batch_size=30",
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--trainer.max_epochs=2",
        "--trainer.callbacks+=lit_vir.training.callbacks.dynamics.ReservoirDynamics",
        *QUICK_DYNAMICS,
    )
    events = read_events(tmp_path / "logs" / "vir-mnist" / "version_0")
    assert len(events.Scalars("dynamics/core0/lyapunov_jacobian")) == 3  # once, from rank zero alone
    assert len(events.Images("dynamics/core0/states")) == 3
