"""The real command line: console scripts in subprocesses, config composition, checkpoints, TensorBoard."""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_vir.cli import build_from_config, main
from lit_vir.models import ViR
from lit_vir.training import ImageClassifier
from lit_vir.training.checkpoints import load_classifier, read_checkpoint
from tests.conftest import CONFIGS, QUICK_TRAINER, TINY_VIR, console_script
from tests.fakedata import write_cifar10, write_mnist


def checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.glob("logs/*/version_*/checkpoints/*.ckpt"))


def printed_metric(output: str, name: str) -> float:
    """A value from Lightning's printed test table (`│ test/acc │ 0.97 │`)."""
    match = re.search(rf"{re.escape(name)}\s*│\s*([0-9.eE+-]+)", output)
    assert match, f"{name} not in the output:\n{output}"
    return float(match.group(1))


def evaluated_accuracy(checkpoint: Path, config: list[str], batches: int) -> float:
    """The checkpoint's accuracy on the first `batches` test batches, computed here with a plain loop: the
    reference for the test/acc that `lit-vir test` prints (run from the folder holding `data/`)."""
    _, data = build_from_config(config)
    data.prepare_data()
    data.setup("test")
    backbone = load_classifier(checkpoint).backbone.eval()
    correct = seen = 0
    with torch.no_grad():
        for images, labels in itertools.islice(data.test_dataloader(), batches):
            correct += int((backbone(images).argmax(dim=1) == labels).sum())
            seen += len(labels)
    return correct / seen


def printed_config(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_fit_then_test_from_checkpoint_on_mnist_idx_files(tmp_path, monkeypatch, run_cli, capsys):
    write_mnist(tmp_path / "data", train=300, test=100)
    common = ["-c", str(CONFIGS / "vir.yaml"), *TINY_VIR, *QUICK_TRAINER, "--data.init_args.download", "false"]
    run_cli("fit", *common)  # the console script in a subprocess; `test` in process (same entry point)
    saved = checkpoints(tmp_path)
    assert [path.name for path in saved if path.name == "last.ckpt"] == ["last.ckpt"]
    config = yaml.safe_load((tmp_path / "logs" / "vir-mnist" / "version_0" / "config.yaml").read_text())
    backbone = config["model"]["init_args"]["backbone"]["init_args"]
    assert (backbone["num_nodes"], backbone["embed_dim"], config["trainer"]["limit_train_batches"]) == (32, 16, 3)
    best = next(path for path in saved if path.name != "last.ckpt")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    main(["test", *common, "--ckpt_path", str(best)])
    tested = capsys.readouterr().out
    expected = evaluated_accuracy(best, common, batches=2)
    assert printed_metric(tested, "test/acc") == pytest.approx(expected, abs=1e-6)


def test_fast_dev_run_then_test_from_checkpoint_on_cifar10_pickles(tmp_path, monkeypatch, run_cli, capsys):
    write_cifar10(tmp_path / "data")
    common = [
        "-c",
        str(CONFIGS / "vir.yaml"),
        "-c",
        str(CONFIGS / "data" / "cifar10.yaml"),
        *TINY_VIR,
        "--data.init_args.verify_checksums",
        "false",
        "--data.init_args.download",
        "false",
    ]
    run_cli("fit", *common, *QUICK_TRAINER, "--model.backbone.init_args.depth", "2")
    last = tmp_path / "logs" / "vir-cifar10" / "version_0" / "checkpoints" / "last.ckpt"
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    main(["test", *common, *QUICK_TRAINER, "--ckpt_path", str(last)])
    tested = capsys.readouterr().out
    expected = evaluated_accuracy(last, common, batches=2)  # the checkpoint's own backbone: depth 2
    assert printed_metric(tested, "test/acc") == pytest.approx(expected, abs=1e-6)

    quick = tmp_path / "quick"
    quick.mkdir()
    (quick / "data").symlink_to(tmp_path / "data")
    monkeypatch.chdir(quick)
    main(["fit", *common, "--trainer.fast_dev_run", "true", "--trainer.accelerator", "cpu"])
    captured = capsys.readouterr()
    assert "fast_dev_run" in captured.out + captured.err and not (quick / "logs").exists()  # one batch, no files


def test_quickstart_reaches_95_percent_on_digits(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # in process: the README's first command, its own printed test table
    main(["fit", "-c", str(CONFIGS / "quickstart.yaml"), "--trainer.enable_progress_bar", "false"])
    # a training outcome (the README's claim), not a computed value: the printed test/acc itself is checked against
    # a plain loop over the checkpoint (`evaluated_accuracy`) in test_fit_then_test_from_checkpoint_on_mnist_idx_files
    assert printed_metric(capsys.readouterr().out, "test/acc") >= 0.95


def test_help_shows_the_commands_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    shown = capsys.readouterr().out
    assert exit_info.value.code == 0 and "fit" in shown and "examples:" in shown


@pytest.mark.parametrize("script", ["lit-vir", "lightning"])
def test_console_scripts_are_ours(script):
    """Both installed scripts call this main (the subprocess runs here go through `lit-vir`): `lightning fit -c
    configs/vir.yaml`, the README's form, must not reach Lightning's own `lightning` script, which a later
    install of lightning would write over ours."""
    text = Path(console_script(script)).read_text()
    assert "from lit_vir.cli import main" in text, text


def test_python_module_entry_point_exits_with_the_configuration_error(tmp_path):
    import subprocess
    import sys

    bad = "--model.backbone.init_args.spectral_radius=0"
    shown = subprocess.run(
        [sys.executable, "-m", "lit_vir", "fit", "-c", str(CONFIGS / "vir.yaml"), bad],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert shown.returncode == 2, shown.stdout + shown.stderr
    assert "lit-vir: invalid configuration: Reservoir: spectral_radius (α) = 0.0" in shown.stderr
    assert not list(tmp_path.iterdir())  # stopped before any data or log was written


def test_python_module_runs_the_command_line(monkeypatch, capsys):
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", ["lit_vir", "fit", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("lit_vir", run_name="__main__")
    shown = capsys.readouterr().out
    assert exit_info.value.code == 0 and "--model" in shown and "--trainer.max_epochs" in shown


def test_configs_compose_left_to_right(capsys):
    config = printed_config(
        capsys,
        "-c",
        str(CONFIGS / "vir.yaml"),
        "-c",
        str(CONFIGS / "data" / "cifar10.yaml"),
        "-c",
        str(CONFIGS / "depth" / "3.yaml"),
        "-c",
        str(CONFIGS / "model" / "vir_serial.yaml"),
    )
    backbone = config["model"]["init_args"]["backbone"]
    assert config["data"]["class_path"] == "lit_vir.data.CIFAR10DataModule"
    assert (backbone["init_args"]["depth"], backbone["init_args"]["mode"]) == (3, "serial")
    assert backbone["init_args"]["num_nodes"] == 1000  # the rest of vir.yaml survives


def test_command_line_override_of_a_nested_field(capsys):
    config = printed_config(capsys, "-c", str(CONFIGS / "vir.yaml"), "--model.backbone.init_args.depth", "6")
    assert config["model"]["init_args"]["backbone"]["init_args"]["depth"] == 6


def test_vit_piece_swaps_the_backbone(capsys):
    config = printed_config(
        capsys,
        "-c",
        str(CONFIGS / "vir.yaml"),
        "-c",
        str(CONFIGS / "model" / "vit_base.yaml"),
        "-c",
        str(CONFIGS / "depth" / "12.yaml"),
    )
    backbone = config["model"]["init_args"]["backbone"]
    assert backbone["class_path"] == "lit_vir.models.VisionTransformer"
    assert (backbone["init_args"]["embed_dim"], backbone["init_args"]["depth"]) == (768, 12)


def test_strong_recipe_keeps_the_data_links(tmp_path, monkeypatch):
    # digits are 1-channel 8×8: without the links the ViT would expect 3 channels and fail at the first batch
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            "-c",
            str(CONFIGS / "vir.yaml"),
            "-c",
            str(CONFIGS / "data" / "digits.yaml"),
            "-c",
            str(CONFIGS / "model" / "vit_small.yaml"),
            "-c",
            str(CONFIGS / "recipe" / "strong.yaml"),
            "--model.backbone.init_args.patch_size",
            "2",
            "--model.backbone.init_args.depth",
            "1",
            "--trainer.max_epochs",
            "6",  # the recipe warms up for 5 epochs (a shorter run is refused)
            "--trainer.limit_train_batches",
            "1",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.logger",
            "false",
        ]
    )
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")  # no logger: the run's folder is here
    weights = checkpoint["state_dict"]
    # the data's 1 channel, 8×8 images and 10 classes reached the ViT: (8 / 2)² patch tokens and a class token
    assert weights["backbone.patch_embed.weight"].shape[1:] == (1, 2, 2)
    assert weights["backbone.pos_embed"].shape[1] == (8 // 2) ** 2 + 1
    assert weights["backbone.head.weight"].shape[0] == 10
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (5, 6)  # 6 epochs of one batch
    (schedule,) = checkpoint["lr_schedulers"]
    assert (schedule["warmup"], schedule["total"], schedule["last_epoch"]) == (5, 6, 6)  # spans the 6 epochs
    decay, no_decay = checkpoint["optimizer_states"][0]["param_groups"]  # lit_vir.training.weight_decay's groups
    assert (decay["initial_lr"], decay["weight_decay"], decay["decoupled_weight_decay"]) == (1e-3, 0.05, True)
    assert (no_decay["initial_lr"], no_decay["weight_decay"]) == (1e-3, 0.0)  # biases, norms, pos_embed, cls_token
    assert decay["lr"] == no_decay["lr"] == 0.0  # the end of the cosine: ½·(1 + cos π) of the base rate
    assert checkpoint["hyper_parameters"]["label_smoothing"] == 0.1


def test_warmup_cosine_without_total_spans_the_trainers_epochs():
    from functools import partial

    import lightning as L

    from lit_vir.models import VisionTransformer
    from lit_vir.training import ImageClassifier, WarmupCosineLR

    backbone = VisionTransformer(image_size=8, in_channels=1, patch_size=4, embed_dim=8, depth=1, num_heads=2)
    module = ImageClassifier(backbone, scheduler=partial(WarmupCosineLR, warmup=2))
    module.trainer = L.Trainer(max_epochs=7, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert module.configure_optimizers()["lr_scheduler"]["scheduler"].total == 7
    module.trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match="warmup"):  # 2 warm-up epochs cannot fit in a 1-epoch run
        module.configure_optimizers()


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("--model.backbone.init_args.spectral_radius=0", "spectral_radius (α)"),
        ("--model.backbone.init_args.spectral_radius=-0.5", "spectral_radius (α)"),
        ("--model.backbone.init_args.input_sparsity=1.5", "input_sparsity (SD)"),
        ("--model.backbone.init_args.input_sparsity=0", "input_sparsity (SD)"),
        ("--model.backbone.init_args.jump_size=1000", "jump_size (ℓ)"),
        ("--model.backbone.init_args.patch_size=5", "patch_size (P)"),
    ],
)
def test_bad_values_stop_before_any_data_is_read(tmp_path, monkeypatch, capsys, override, field):
    monkeypatch.chdir(tmp_path)  # no MNIST here: reading data would fail with a different message
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(CONFIGS / "vir.yaml"), override])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert ("invalid configuration" in error and field in error and "allowed range" in error) or "divide" in error
    assert not (tmp_path / "data").exists() and not (tmp_path / "logs").exists()


def test_unknown_pooling_names_the_field_and_choices(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", "-c", str(CONFIGS / "vir.yaml"), "--model.backbone.init_args.pooling=max"])
    error = capsys.readouterr().err
    assert "pooling" in error and "'flatten', 'mean', 'last'" in error


def run_in_process(tmp_path: Path, monkeypatch, *args: str) -> Path:
    """A short in-process fit on generated MNIST; returns the run folder."""
    write_mnist(tmp_path / "data", train=200, test=50)
    monkeypatch.chdir(tmp_path)
    main(
        ["fit", "-c", str(CONFIGS / "vir.yaml"), *TINY_VIR, *QUICK_TRAINER, "--data.init_args.download", "false", *args]
    )
    return tmp_path / "logs" / "vir-mnist" / "version_0"


def test_checkpoint_round_trip_restores_reservoirs_bit_for_bit(tmp_path, monkeypatch):
    run = run_in_process(tmp_path, monkeypatch, "--model.backbone.init_args.seed", "123")
    restored = ImageClassifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt")
    fresh = ViR(
        num_classes=10, image_size=28, in_channels=1, num_nodes=32, jump_size=5, embed_dim=16, mlp_dim=32, seed=123
    )
    other_seed = ViR(
        num_classes=10, image_size=28, in_channels=1, num_nodes=32, jump_size=5, embed_dim=16, mlp_dim=32, seed=7
    )
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    other_seed.load_state_dict({k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")})
    for name in ("weight", "input_weight"):
        original = getattr(fresh.reservoirs[0], name)
        assert torch.equal(getattr(restored.backbone.reservoirs[0], name), original)
        assert torch.equal(getattr(other_seed.reservoirs[0], name), original)


def test_tensorboard_event_file_holds_the_logged_scalars(tmp_path, monkeypatch):
    run = run_in_process(tmp_path, monkeypatch, "--trainer.log_every_n_steps", "1")
    events = EventAccumulator(str(run))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    expected = {
        "train/loss_step",
        "train/loss_epoch",
        "train/acc",
        "val/loss",
        "val/acc",
        "val/acc_top5",
        "val/acc_best",
        "lr-Adam/decay",  # lit_vir.training.weight_decay names the groups; biases and norms are in no_decay
        "lr-Adam/no_decay",
        "params/trainable",
        "params/frozen",
        "params/fixed",
    }
    assert expected <= scalars, f"missing: {expected - scalars}"
    assert events.Scalars("params/fixed")[0].value == 32 * 32 + 16 * 32  # W (N×N) and V (D×N)
    assert events.Scalars("params/frozen")[0].value == 4 * 4 * 1 * 16 + 16  # the fixed patch embedding
    assert events.Scalars("lr-Adam/decay")[0].value == pytest.approx(3e-4)
    assert events.Scalars("lr-Adam/no_decay")[0].value == pytest.approx(3e-4)
