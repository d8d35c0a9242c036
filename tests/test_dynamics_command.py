"""`lit-vir dynamics` on real configs and a real checkpoint: the JSON it writes and the errors it gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lit_vir.cli import build_from_config
from lit_vir.cli import main as cli_main
from lit_vir.commands.dynamics import main
from lit_vir.training.checkpoints import load_classifier
from tests.analysis_reference import assert_core_fields_match, expected_records
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


def check_reservoir_record(record: dict, drive: str, expected: dict) -> None:
    """The record's fields and curves, each against the same quantity computed here (`reference_core_fields`)."""
    assert record.keys() >= NUMBERS, f"missing {NUMBERS - record.keys()}"
    for name, length in CURVES.items():
        assert len(record[name]) == length
    assert record["drive"] == drive
    assert_core_fields_match(record, expected)
    assert set(record["seconds"]) == {"states", "echo_state", "spectrum", "lyapunov", "memory", "small_world"}


def first_test_images(config: list[str], count: int) -> torch.Tensor:
    _, data = build_from_config(config)
    data.setup("test")
    return torch.stack([data.test_set[index][0] for index in range(count)])


BUDGETS = dict(max_delay=20, path_sources=10)  # QUICK_BUDGETS


def test_config_with_overrides_gives_every_field_for_every_reservoir(mnist_folder, capsys):
    config = ["-c", str(CONFIGS / "vir.yaml"), *TINY_VIR, "--data.init_args.download", "false"]
    main([*config, "--model.backbone.init_args.depth", "2", *QUICK_BUDGETS, "--output", "out/dynamics.json"])
    report = json.loads((mnist_folder / "out" / "dynamics.json").read_text())
    assert (report["mode"], report["depth"], report["images"]) == ("parallel", 2, 3)
    assert report["settings"]["max_delay"] == 20
    assert [record["name"] for record in report["reservoirs"]] == ["core0", "core1"]
    depth_2 = [*config, "--model.backbone.init_args.depth", "2"]
    model = build_from_config(depth_2)[0].backbone
    expected = expected_records(model, first_test_images(depth_2, 3), **BUDGETS)
    for record, fields in zip(report["reservoirs"], expected, strict=True):
        check_reservoir_record(record, "tokens", fields)
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
    (expected,) = expected_records(load_classifier(checkpoint).backbone, first_test_images(config, 3), **BUDGETS)
    check_reservoir_record(record, "tokens", expected)
    for name in ("spectral_radius", "memory_capacity", "weighted_sigma"):  # W is restored exactly
        assert record[name] == from_config["reservoirs"][0][name]


def test_iid_drive_needs_no_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data folder here
    config = ["-c", str(CONFIGS / "vir.yaml"), *TINY_VIR, "--data.init_args.download", "false"]
    main([*config, "--iid", *QUICK_BUDGETS, "--measures", "lyapunov", "states", "--output", "iid.json"])
    (record,) = json.loads((tmp_path / "iid.json").read_text())["reservoirs"]
    assert record["drive"] == "iid" and "memory_capacity" not in record
    (expected,) = expected_records(build_from_config(config)[0].backbone, None, **BUDGETS)
    measured = {name for name in record if name.startswith(("lyapunov_", "state_"))}
    assert len(measured) == 6
    assert_core_fields_match({name: record[name] for name in measured}, {name: expected[name] for name in measured})


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
