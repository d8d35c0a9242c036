"""The sweep recipe prints commands that the real CLI accepts, one per grid cell."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest
import yaml

from lit_vir.cli import main
from tests.conftest import REPO


def sweep_commands(**grid: str) -> list[list[str]]:
    environment = {**os.environ, "DRY_RUN": "1", **grid}
    printed = subprocess.run(
        ["bash", "scripts/sweep.sh"], cwd=REPO, env=environment, capture_output=True, text=True, check=True
    )
    return [shlex.split(line) for line in printed.stdout.splitlines()]


def test_sweep_covers_the_grid_and_every_command_parses(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    commands = sweep_commands(DATASETS="digits", MODELS="vir vir_serial vit_base", DEPTHS="1 3", SEEDS="1 2")
    assert len(commands) == 2 * (2 + 1 + 2)  # seeds × (vir at 2 depths, serial at depth 3 only, ViT at 2 depths)
    seen = set()
    for command in commands:
        assert command[:2] == ["lit-vir", "fit"]
        with pytest.raises(SystemExit) as exit_info:
            main([*command[1:], "--print_config"])
        assert exit_info.value.code in (0, None)
        config = yaml.safe_load(capsys.readouterr().out)
        backbone = config["model"]["init_args"]["backbone"]
        seen.add(
            (
                backbone["class_path"].rsplit(".", 1)[-1],
                backbone["init_args"]["depth"],
                backbone["init_args"].get("mode"),
                config["seed_everything"],
            )
        )
        assert config["data"]["class_path"] == "lit_vir.data.DigitsDataModule" and config["test_after_fit"] is True
        if backbone["class_path"].endswith("ViR"):
            assert backbone["init_args"]["seed"] == config["seed_everything"]  # a new reservoir per seed
    assert ("ViR", 3, "serial", 2) in seen and ("VisionTransformer", 1, None, 1) in seen and len(seen) == 10
