"""The ReservoirDynamics callback: what it writes to TensorBoard in real runs, and what it must leave alone."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from sklearn.datasets import load_digits
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_vir.analysis.cores import reservoir_cores
from lit_vir.analysis.figures import figure_to_array, states_figure
from lit_vir.analysis.report import AnalysisSettings, core_drive
from lit_vir.analysis.states import run_reservoir
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


class OrderedDigits(L.LightningDataModule):
    """scikit-learn's digits, unshuffled: validation image 0 is the dataset's first image. `images_only` serves
    bare image batches (no labels), as an unlabelled validation set would."""

    def __init__(self, images_only: bool = False) -> None:
        super().__init__()
        digits = load_digits()
        self.images = torch.tensor(digits.images[:64], dtype=torch.float32).unsqueeze(1) / 16.0  # (64, 1, 8, 8)
        self.labels = torch.tensor(digits.target[:64])
        self.images_only = images_only

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.images, self.labels), batch_size=16)

    def val_dataloader(self) -> DataLoader:
        data = self.images if self.images_only else TensorDataset(self.images, self.labels)
        return DataLoader(data, batch_size=4)


QUICK = dict(memory=False, small_world=False, max_delay=10, path_sources=10)


def tiny_backbone() -> ViR:
    torch.manual_seed(3)
    return ViR(10, 8, 1, patch_size=2, embed_dim=6, num_nodes=12, jump_size=3, mlp_dim=8, leak_rate=0.7)


def fit_with(tmp_path: Path, callback: ReservoirDynamics, epochs: int = 1, datamodule=None, **fit) -> Path:
    """A real fit of a tiny ViR on 64 digits (4 steps an epoch), logging to TensorBoard; the run's log folder."""
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        limit_val_batches=1,
        logger=TensorBoardLogger(tmp_path),
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(ImageClassifier(tiny_backbone()), datamodule=datamodule, **fit)
    return Path(trainer.logger.log_dir)


def test_the_documented_defaults_and_the_refusal_of_counts_below_1():
    callback = ReservoirDynamics()
    assert (callback.every_n_epochs, callback.num_images) == (1, 8)
    assert (callback.memory, callback.small_world, callback.figures) == (True, True, True)
    ReservoirDynamics(every_n_epochs=1, num_images=1)  # the smallest accepted
    for every_n_epochs, num_images in ((0, 8), (1, 0)):
        with pytest.raises(ValueError) as error:
            ReservoirDynamics(every_n_epochs=every_n_epochs, num_images=num_images)
        assert str(error.value) == (
            f"ReservoirDynamics: every_n_epochs = {every_n_epochs} and num_images = {num_images} must be ≥ 1."
        )


def test_the_driven_measures_come_at_fit_start_and_every_nth_epoch_at_the_global_step(tmp_path):
    """every_n_epochs 3 over 4 epochs of 4 steps: at fit start (step 0) and after epoch 3 (step 12), scalars and
    the states figure alike; the W-only measures once."""
    run = fit_with(tmp_path, ReservoirDynamics(every_n_epochs=3, num_images=4, **QUICK), epochs=4,
                   datamodule=OrderedDigits())  # fmt: skip
    events = read_events(run)
    assert [event.step for event in events.Scalars("dynamics/core0/lyapunov_jacobian")] == [0, 12]
    assert [event.step for event in events.Images("dynamics/core0/states")] == [0, 12]
    assert [event.step for event in events.Scalars("dynamics/core0/spectral_radius")] == [0]


def logged_image(events: EventAccumulator, tag: str, index: int) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(events.Images(tag)[index].encoded_image_string)).convert("RGB"))


def expected_states_image(backbone: ViR, images: torch.Tensor | None, title: str) -> np.ndarray:
    """The heat map of core 0's states over the drive of its first image (tokens, or the i.i.d. protocol)."""
    (core,) = reservoir_cores(backbone, images)
    drive = core_drive(core, AnalysisSettings(**{key: QUICK[key] for key in ("max_delay", "path_sources")}))
    states = run_reservoir(core.tensors.weight, drive.values[:1], core.tensors.leak_rate).states[0]  # (T, N)
    return figure_to_array(states_figure(states, f"core0: states h_t, {title}"))


def test_the_states_figure_is_image_0s_states_or_the_iid_drives_with_its_source_in_the_title(tmp_path, caplog):
    """At fit start, pixel for pixel: with a validation loader, the tokens of its first image; without one (plain
    loaders, no datamodule), the i.i.d. drive, said in the log and the title."""
    data = OrderedDigits()
    events = read_events(fit_with(tmp_path / "tokens", ReservoirDynamics(num_images=4, **QUICK), datamodule=data))
    expected = expected_states_image(tiny_backbone(), data.images[:4], "tokens of validation image 0")
    assert np.array_equal(logged_image(events, "dynamics/core0/states", 0), expected)

    with caplog.at_level(logging.INFO):
        run = fit_with(tmp_path / "iid", ReservoirDynamics(**QUICK), train_dataloaders=data.train_dataloader())
    assert "ReservoirDynamics: no datamodule validation loader: driving with i.i.d. input instead." in [
        record.getMessage() for record in caplog.records
    ]
    expected = expected_states_image(tiny_backbone(), None, "i.i.d. input")
    assert np.array_equal(logged_image(read_events(run), "dynamics/core0/states", 0), expected)


class CountingImages(torch.utils.data.Dataset):
    """Bare images (no labels) that count how many were read."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images, self.read = images, 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        self.read += 1
        return self.images[index]


def test_unlabelled_validation_batches_drive_it_and_only_the_batches_needed_are_read():
    data = OrderedDigits(images_only=True)
    counting = CountingImages(data.images)
    data.val_dataloader = lambda: DataLoader(counting, batch_size=4)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.datamodule = data
    callback = ReservoirDynamics(num_images=8)
    images = callback._validation_images(trainer)
    assert torch.equal(images, data.images[:8]) and counting.read == 8  # two batches of 4, not a third


def test_a_module_without_a_backbone_or_a_trainer_without_a_logger_is_skipped_with_the_reason(tmp_path, caplog):
    from lightning.pytorch.demos.boring_classes import BoringModel

    callback = ReservoirDynamics(**QUICK)
    with caplog.at_level(logging.INFO):
        callback.on_fit_start(L.Trainer(logger=False, enable_progress_bar=False), BoringModel())
        callback.on_fit_start(L.Trainer(logger=False, enable_progress_bar=False), ImageClassifier(tiny_backbone()))
    assert [record.getMessage() for record in caplog.records if "ReservoirDynamics" in record.getMessage()] == [
        "ReservoirDynamics: the backbone is a NoneType, not a ViR: no reservoir dynamics to log.",
        "ReservoirDynamics: the trainer has no logger: nothing to log.",
    ]
    assert not callback._active


class TrainingOnly(OrderedDigits):
    """A datamodule without a validation loader of its own (LightningDataModule's default raises if called)."""

    val_dataloader = L.LightningDataModule.val_dataloader


def test_a_datamodule_without_a_validation_loader_falls_back_to_the_iid_drive(caplog):
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.datamodule = TrainingOnly()
    with caplog.at_level(logging.INFO):
        assert ReservoirDynamics()._validation_images(trainer) is None
    assert [record.getMessage() for record in caplog.records if "ReservoirDynamics" in record.getMessage()] == [
        "ReservoirDynamics: no datamodule validation loader: driving with i.i.d. input instead."
    ]
