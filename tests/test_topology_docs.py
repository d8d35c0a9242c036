"""Every command in docs/topology.md runs: each fenced shell command either runs here, in process, with tiny
overrides (digits for Fashion-MNIST, a 32-node model, a few batches), or is marked not run with its reason."""

from __future__ import annotations

import csv
import json
import math
import re
import shlex

from lit_vir.cli import main
from lit_vir.commands.dynamics import TABLE_ROWS
from lit_vir.models.reservoir_options import TOPOLOGIES
from tests.conftest import REPO, TINY_VIR

PAGE = REPO / "docs" / "topology.md"
MARKER = "<!-- not run by the tests:"
DIGITS = str(REPO / "configs" / "data" / "digits.yaml")
# digits images (8×8) in 16 tokens, few batches; no progress bar or summary to render
FIT = [
    *TINY_VIR,
    "--model.backbone.init_args.patch_size",
    "2",
    "--trainer.limit_train_batches",
    "3",
    "--trainer.limit_val_batches",
    "2",
    "--trainer.limit_test_batches",
    "2",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
]
DYNAMICS = [*TINY_VIR, "--max_delay", "20", "--path_sources", "10", "--images", "3"]


def page_commands() -> tuple[list[str], list[str]]:
    """The `lit-vir` commands of the page's ```bash blocks: (run by this test, marked not run)."""
    lines = PAGE.read_text().splitlines()
    run, skipped = [], []
    for index, line in enumerate(lines):
        if line.strip() != "```bash":
            continue
        previous = next((lines[back] for back in range(index - 1, -1, -1) if lines[back].strip()), "")
        block = []
        for body in lines[index + 1 :]:
            if body.strip() == "```":
                break
            block.append(body)
        commands = [command.strip() for command in "\n".join(block).replace("\\\n", " ").splitlines()]
        commands = [command for command in commands if command and not command.startswith("#")]
        (skipped if previous.startswith(MARKER) else run).extend(commands)
    return run, skipped


def test_every_shell_block_is_run_here_or_marked_with_a_reason():
    run, skipped = page_commands()
    assert run and skipped
    text = PAGE.read_text()
    for marker in re.findall(rf"{re.escape(MARKER)}(.*?)-->", text):
        assert len(marker.strip()) > 20  # a reason, not an empty marker
    assert all(command.startswith(("lit-vir ", "for ", "done", "  lit-vir")) for command in run + skipped)


def in_process(command: str) -> list[str]:
    """The page's command as `lit_vir.cli.main` arguments, on digits and with tiny overrides."""
    arguments = shlex.split(command)[1:]
    arguments = [DIGITS if argument.endswith("configs/data/fashion_mnist.yaml") else argument for argument in arguments]
    arguments = [argument.replace("vir-fashionmnist", "vir-digits") for argument in arguments]
    arguments = [str(REPO / argument) if argument.startswith("configs/") else argument for argument in arguments]
    tool = arguments[0]
    if tool == "fit" and "--print_config" not in arguments:
        return [*arguments, *FIT]
    if tool == "dynamics":
        return [*arguments, *DYNAMICS]
    return arguments


def test_the_pages_commands_run_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run, _ = page_commands()
    for command in run:
        arguments = in_process(command)
        try:
            main(arguments)
        except SystemExit as exit_info:
            assert exit_info.code in (0, None), f"{command} exited {exit_info.code}"
        if "--print_config" in arguments:
            assert "topology: small_world" in capsys.readouterr().out
    report = json.loads((tmp_path / "dynamics-random_sparse.json").read_text())
    assert report["topology"] == "random_sparse" and report["reservoirs"][0]["num_nodes"] == 32
    with open(tmp_path / "comparison" / "compare.csv") as stream:
        assert [row["model"] for row in csv.DictReader(stream)] == ["ViR-1 ridge"]


def number(value: float) -> str:
    """A measure as the page shows it: 4 significant digits as `lit-vir dynamics` prints, −∞ and NaN spelled out."""
    if math.isnan(value):
        return "undefined"
    if math.isinf(value):
        return "−∞" if value < 0 else "∞"
    return f"{value:.4g}"


def dynamics_table(records: dict[str, dict]) -> str:
    """The page's dynamics table: one column per topology, the rows of `lit-vir dynamics`' table."""
    names = list(records)
    lines = ["| measure | " + " | ".join(f"`{name}`" for name in names) + " |", "|---" * (len(names) + 1) + "|"]
    for field, label in TABLE_ROWS:
        cells = " | ".join(number(records[name][field]) for name in names)
        lines.append(f"| {label.replace('|', chr(92) + '|')} | {cells} |")  # a | in a label would split its cell
    return "\n".join(lines)


def recorded_dynamics() -> dict[str, dict]:
    folder = REPO / "docs" / "measurements" / "topology"
    reports = {name: json.loads((folder / f"dynamics-{name}.json").read_text()) for name in TOPOLOGIES}
    for name, report in reports.items():
        assert report["topology"] == name and report["reservoirs"][0]["num_nodes"] == 1000
        assert report["reservoirs"][0]["drive"] == "tokens"
    return {name: report["reservoirs"][0] for name, report in reports.items()}


def test_the_dynamics_table_is_the_recorded_lit_vir_dynamics_output():
    assert dynamics_table(recorded_dynamics()) in PAGE.read_text()
