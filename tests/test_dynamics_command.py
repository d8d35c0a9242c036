"""`lit-vir dynamics` on real configs and a real checkpoint: the JSON it writes and the errors it gives."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lit_vir.cli import main as cli_main
from lit_vir.commands.dynamics import main
from tests.conftest import CONFIGS, QUICK_TRAINER, TINY_VIR
from tests.fakedata import write_mnist

QUICK_BUDGETS = ["--max_delay", "20", "--path_sources", "10", "--images", "3"]
NUMBERS = {
    "num_nodes",
    "lyapunov_jacobian",
    "lyapunov_perturbation",
    "memory_capacity",
    "spectral_radius",
    "echo_state_distance",
    "state_mean_abs",
    "state_std",
    "state_saturated_fraction",
    "state_mean_gain",
    *(
        f"{graph}_{name}"
        for graph in ("weighted", "strongest")
        for name in (
            "clustering",
            "path_length",
            "random_clustering",
            "random_path_length",
            "lattice_clustering",
            "lattice_path_length",
            "sigma",
            "omega",
            "edges",
        )
    ),
}
CURVES = {"memory_capacity_per_delay": 20, "echo_state_curve": 49 + 1}  # k_max 20; T = 49 tokens of 28×28, P 4


@pytest.fixture
def mnist_folder(tmp_path: Path, monkeypatch) -> Path:
    write_mnist(tmp_path / "data", train=200, test=50)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def check_reservoir_record(record: dict, drive: str) -> None:
    assert record.keys() >= NUMBERS, f"missing {NUMBERS - record.keys()}"
    assert all(math.isfinite(record[name]) for name in NUMBERS)
    for name, length in CURVES.items():
        assert len(record[name]) == length
    assert record["drive"] == drive
    assert record["num_nodes"] == 32 and record["spectral_radius"] == pytest.approx(0.9, abs=1e-4)
    assert 0 < record["memory_capacity"] <= 32
    assert record["echo_state_distance"] < 1  # contracting at α 0.9
    assert set(record["seconds"]) == {"states", "echo_state", "spectrum", "lyapunov", "memory", "small_world"}


def test_config_with_overrides_gives_every_field_for_every_reservoir(mnist_folder, capsys):
    config = ["-c", str(CONFIGS / "vir.yaml"), *TINY_VIR, "--data.init_args.download", "false"]
    main([*config, "--model.backbone.init_args.depth", "2", *QUICK_BUDGETS, "--output", "out/dynamics.json"])
    report = json.loads((mnist_folder / "out" / "dynamics.json").read_text())
    assert (report["mode"], report["depth"], report["images"]) == ("parallel", 2, 3)
    assert report["settings"]["max_delay"] == 20
    assert [record["name"] for record in report["reservoirs"]] == ["core0", "core1"]
    for record in report["reservoirs"]:
        check_reservoir_record(record, "tokens")
    printed = capsys.readouterr().out
    assert "core1 of a parallel ViR-2" in printed and "λ, Jacobian method" in printed


def test_checkpoint_gives_every_field_with_images_from_the_saved_config(mnist_folder):
    config = ["-c", str(CONFIGS / "vir.yaml"), *TINY_VIR, "--data.init_args.download", "false"]
    cli_main(["fit", *config, *QUICK_TRAINER])
    checkpoint = mnist_folder / "logs" / "vir-mnist" / "version_0" / "checkpoints" / "last.ckpt"
    main(["--ckpt_path", str(checkpoint), *QUICK_BUDGETS, "--output", "from_checkpoint.json"])
    main([*config, *QUICK_BUDGETS, "--output", "from_config.json"])
    from_checkpoint = json.loads((mnist_folder / "from_checkpoint.json").read_text())
    from_config = json.loads((mnist_folder / "from_config.json").read_text())
    assert from_checkpoint["source"]["checkpoint"] == str(checkpoint)
    (record,) = from_checkpoint["reservoirs"]
    check_reservoir_record(record, "tokens")
    for name in ("spectral_radius", "memory_capacity", "weighted_sigma"):  # W is restored exactly
        assert record[name] == from_config["reservoirs"][0][name]


def test_iid_drive_needs_no_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data folder here
    config = ["-c", str(CONFIGS / "vir.yaml"), *TINY_VIR, "--data.init_args.download", "false"]
    main([*config, "--iid", *QUICK_BUDGETS, "--measures", "lyapunov", "states", "--output", "iid.json"])
    (record,) = json.loads((tmp_path / "iid.json").read_text())["reservoirs"]
    assert record["drive"] == "iid" and record["lyapunov_perturbation"] < 0
    assert "memory_capacity" not in record


def test_missing_test_images_point_to_iid(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["-c", str(CONFIGS / "vir.yaml"), *TINY_VIR, "--data.init_args.download", "false"])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert "cannot read the test images" in error and "--iid" in error


def test_a_vit_backbone_is_refused_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    vit = ["-c", str(CONFIGS / "vir.yaml"), "-c", str(CONFIGS / "model" / "vit_small.yaml")]
    with pytest.raises(SystemExit) as exit_info:
        main([*vit, "--model.backbone.init_args.depth", "1", "--iid"])
    assert exit_info.value.code == 2
    assert "not a ViR" in capsys.readouterr().err


def test_config_and_checkpoint_together_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["-c", str(CONFIGS / "vir.yaml"), "--ckpt_path", "last.ckpt"])
    assert exit_info.value.code == 2
    assert "not both" in capsys.readouterr().err


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    assert "examples:" in shown and "--ckpt_path" in shown and "--iid" in shown
