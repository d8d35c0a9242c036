"""DDP on CPU, mixed precision, failing well on NaN, and reproducible runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from lightning import Trainer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import lit_vir
from lit_vir.cli import main
from lit_vir.data import MNISTDataModule
from lit_vir.models import ViR, VisionTransformer
from lit_vir.training import ImageClassifier
from lit_vir.training.checkpoints import read_checkpoint
from lit_vir.training.guards import ReservoirMismatchError, diagnose_non_finite, verify_same_reservoirs
from tests.conftest import CONFIGS, QUICK_TRAINER, TINY_VIR
from tests.fakedata import write_mnist

RUN = Path("logs") / "vir-mnist" / "version_0"


def test_ddp_on_cpu_builds_identical_reservoirs_and_finishes_with_a_checkpoint(tmp_path, run_cli):
    write_mnist(tmp_path / "data", train=200, test=40)
    finished = run_cli(
        "fit",
        "-c",
        str(CONFIGS / "vir.yaml"),
        *TINY_VIR,
        *QUICK_TRAINER,
        "--data.init_args.download",
        "false",
        "--data.init_args.batch_size",
        "30",
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
    )
    output = finished.stdout + finished.stderr
    checksums = dict(re.findall(r"rank (\d): reservoir checksum ([0-9a-f]{16})", output))
    assert set(checksums) == {"0", "1"}, output
    assert checksums["0"] == checksums["1"]
    checkpoint = read_checkpoint(tmp_path / RUN / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 3  # 180 training images → 90 per rank → 3 batches of 30 each


def test_differing_reservoirs_across_ranks_stop_the_run():
    verify_same_reservoirs([7, 7, 7])
    with pytest.raises(ReservoirMismatchError, match="rank 1: 0000000000000008"):
        verify_same_reservoirs([7, 8])


BACKBONES = {
    "vir": lambda: ViR(
        num_classes=10, image_size=28, in_channels=1, patch_size=7, num_nodes=64, jump_size=9, embed_dim=32, mlp_dim=64
    ),
    "vir-serial": lambda: ViR(
        num_classes=10,
        image_size=28,
        in_channels=1,
        patch_size=7,
        num_nodes=64,
        jump_size=9,
        embed_dim=32,
        mlp_dim=64,
        depth=2,
        mode="serial",
    ),
    "vit": lambda: VisionTransformer(
        num_classes=10, image_size=28, in_channels=1, patch_size=7, embed_dim=32, depth=2, num_heads=4
    ),
}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_bf16_mixed_logits_stay_close_to_float32(name):
    torch.manual_seed(0)
    model = ImageClassifier(BACKBONES[name]()).eval()
    images = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        reference = model(images)
        with Trainer(precision="bf16-mixed", accelerator="cpu", logger=False).precision_plugin.forward_context():
            mixed = model(images)
    # bf16 keeps 8 significant bits (≈0.4% per rounding); a few layers of it stay within 5% of the logit range.
    assert mixed.dtype == torch.bfloat16
    assert (mixed.float() - reference).abs().max() <= 0.05 * reference.abs().max()


def test_nan_from_a_diverging_learning_rate_stops_with_the_cause_and_step(tmp_path, monkeypatch, capsys):
    write_mnist(tmp_path / "data", train=200, test=20)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                "-c",
                str(CONFIGS / "vir.yaml"),
                *TINY_VIR,
                *QUICK_TRAINER,
                "--data.init_args.download",
                "false",
                "--trainer.limit_train_batches",
                "20",
                "--model.init_args.optimizer.init_args.lr",
                "1e30",
            ]
        )
    error = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert re.search(r"training loss is (nan|inf) at step \d+", error), error
    assert "learning rate" in error
    assert not list(tmp_path.glob("logs/**/*.ckpt"))  # no checkpoint of ruined weights


def test_non_finite_input_is_blamed_on_the_data(tmp_path, monkeypatch, capsys):
    write_mnist(tmp_path / "data", train=200, test=20)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(MNISTDataModule, "mean", (float("nan"),))  # a broken normalisation poisons every input
    with pytest.raises(SystemExit):
        main(["fit", "-c", str(CONFIGS / "vir.yaml"), *TINY_VIR, *QUICK_TRAINER, "--data.init_args.download", "false"])
    error = capsys.readouterr().err
    assert "training loss is nan at step 0" in error
    assert "The input batch holds NaN/Inf: check the dataset files and the normalisation" in error


def test_non_finite_reservoir_states_are_named():
    model = ViR(
        num_classes=3,
        image_size=8,
        in_channels=1,
        patch_size=4,
        num_nodes=16,
        jump_size=3,
        embed_dim=8,
        mlp_dim=8,
        input_sparsity=0.5,
    )
    with torch.no_grad():
        model.embedding.projection.weight.fill_(float("inf"))
    message = diagnose_non_finite(model, torch.ones(2, 1, 8, 8), torch.tensor(float("nan")), step=12)
    assert "at step 12" in message
    assert "'embedding.projection.weight' is NaN/Inf" in message
    assert "reservoir states are NaN/Inf" in message and "spectral_radius" in message


def first_epoch(folder: Path, monkeypatch) -> dict:
    write_mnist(folder / "data", train=200, test=20)
    monkeypatch.chdir(folder)
    main(
        [
            "fit",
            "-c",
            str(CONFIGS / "vir.yaml"),
            *TINY_VIR,
            *QUICK_TRAINER,
            "--data.init_args.download",
            "false",
            "--data.init_args.augment",
            "true",
            "--trainer.log_every_n_steps",
            "1",
        ]
    )
    events = EventAccumulator(str(folder / RUN))
    events.Reload()
    metrics = {tag: [event.value for event in events.Scalars(tag)] for tag in ("val/acc", "train/loss_step")}
    reservoir = read_checkpoint(folder / RUN / "checkpoints" / "last.ckpt")["state_dict"]
    return {
        "metrics": metrics,
        "W": reservoir["backbone.reservoirs.0.weight"],
        "V": reservoir["backbone.reservoirs.0.input_weight"],
    }


def test_same_seed_and_config_give_the_same_reservoirs_and_first_epoch(tmp_path, monkeypatch):
    first = first_epoch(tmp_path / "a", monkeypatch)
    second = first_epoch(tmp_path / "b", monkeypatch)
    assert torch.equal(first["W"], second["W"]) and torch.equal(first["V"], second["V"])
    assert first["metrics"] == second["metrics"]


def test_every_run_saves_its_resolved_config_and_versions(tmp_path, monkeypatch):
    write_mnist(tmp_path / "data", train=100, test=20)
    monkeypatch.chdir(tmp_path)
    main(["fit", "-c", str(CONFIGS / "vir.yaml"), *TINY_VIR, *QUICK_TRAINER, "--data.init_args.download", "false"])
    config = yaml.safe_load((tmp_path / RUN / "config.yaml").read_text())
    assert config["model"]["init_args"]["backbone"]["init_args"]["num_nodes"] == 32
    environment = yaml.safe_load((tmp_path / RUN / "environment.yaml").read_text())
    assert environment["lit_vir"] == lit_vir.__version__
    assert environment["torch"] == torch.__version__ and environment["lightning"]
