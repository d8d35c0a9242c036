"""Every command and Python snippet of README.md and the documentation site, run (`tests/doc_pages.py`): each page's
blocks in order, in a folder of its own with generated datasets in their real formats, each `lit-vir` command in
process on a tiny model. Where a page says what a command writes or prints, that is checked here against what it
wrote. A block that cannot run here must say why in the page (`<!-- not run by the tests: REASON -->`); the first
tests check that none is left unrun or unmarked. docs/how-to/own-images.md and export-and-predict.md are run, and their
outputs recomputed, by tests/test_how_to_pages.py; docs/topology.md by tests/test_topology_docs.py."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.doc_pages import COMMAND, RUNNABLE, Block, blocks, commands, fenced, pages, run_block, the_data

HOW_TO = {"docs/how-to/own-images.md", "docs/how-to/export-and-predict.md"}  # tests/test_how_to_pages.py
OWN_TESTS = HOW_TO | {"docs/topology.md"}  # and tests/test_topology_docs.py: pages whose own test runs them
# Pages whose commands start processes (DDP's second rank, bench's fresh process per model), train the larger
# compared variants or search mixed precision: they cost more than the fast suite's share (`pytest -m slow`).
SLOW = {
    "docs/how-to/multi-gpu.md",
    "docs/concepts/engine.md",
    "docs/concepts/variants.md",
    "docs/how-to/mptq-vit.md",
    "docs/sweeps.md",  # six runs of training and a report
}


def name(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


def run_here(page: Path) -> list[Block]:
    return [] if name(page) in OWN_TESTS else blocks(page)


RUN_PAGES = [page for page in pages() if run_here(page)]


# ------------------------------------------------------------------------------------------- completeness


def test_every_runnable_block_is_run_or_marked_with_a_reason():
    for page in pages():
        for block in fenced(page):
            if block.language in RUNNABLE:
                assert block.skipped is None or block.skipped, f"{block.where}: give the reason it is not run"
                if block.language == "bash" and block.skipped is None:
                    commands(block)  # only lit-vir commands: anything else must be marked
            else:  # an output, a listing, a config: not a command left untagged
                offending = [line for line in block.body.splitlines() if COMMAND.match(line)]
                assert not offending, f"{block.where}: a command in a {block.language or 'plain'} block: {offending}"


def test_every_page_with_commands_is_run_by_a_test():
    expected = {name(page) for page in pages() if blocks(page)} - OWN_TESTS
    assert {name(page) for page in RUN_PAGES} >= expected


def test_the_readme_is_short_and_names_the_ci_test_command():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    ci = (REPO / ".ci" / "run").read_text()
    tests = next(block for block in fenced(REPO / "README.md") if "pytest" in block.body)
    assert tests.body == 'pip install -e ".[dev]"\npytest\n'
    assert 'pip install --quiet -e ".[dev]"\n\npytest\n' in ci  # the same two steps, in CI's own words


# ------------------------------------------------------------------------------------------- what pages say

TINY_VIT_SMALL = "ViT-D16-9"  # compare's label of ViT-Small's 9 blocks at the tests' width (ViT-Small-9 at D 192)


def quickstart(folder: Path, outputs: dict[str, str]) -> None:
    printed = outputs["lit-vir fit -c configs/quickstart.yaml"]
    for metric in ("test_last/acc", "test_last/acc_top5", "test_last/loss", "test/acc", "test/acc_top5", "test/loss"):
        assert re.search(rf"│\s+{re.escape(metric)}\s+│\s+[\d.]+\s+│", printed), metric
    refused = next(text for command, text in outputs.items() if "spectral_radius -1" in command)
    shown = (
        "lit-vir: invalid configuration: Reservoir: spectral_radius (α) = -1.0 is outside the allowed range (0, inf)."
    )
    assert shown in refused
    assert not (folder / "logs" / "vir-digits" / "version_2").exists()  # runs 0 and 1; the refused one made none


def run_folders(folder: Path, outputs: dict[str, str]) -> None:
    run = folder / "logs" / "vir-digits" / "version_0"
    for listed in ("config.yaml", "environment.yaml", "hparams.yaml", "preprocessing.yaml", "checkpoints/last.ckpt"):
        assert (run / listed).is_file(), listed
    assert len(list(run.glob("checkpoints/epoch*-val_acc*.ckpt"))) == 1
    assert list(run.glob("events.out.tfevents.*"))


def first_comparison(folder: Path, outputs: dict[str, str]) -> None:
    table = (folder / "first_comparison" / "compare.md").read_text()
    for row in ("ViR-1 no_reservoir", TINY_VIT_SMALL, "ViR-1"):
        assert f"| {row} " in table, row
    assert (folder / "first_comparison" / "compare.png").stat().st_size > 0
    assert {path.parent.name for path in folder.glob("logs/*/version_*")} == {"vir-digits", "visiontransformer-digits"}


def equal_compute(folder: Path, outputs: dict[str, str]) -> None:
    table = (folder / "comparison" / "compare.md").read_text()
    for row in ("ViR-1", "ViR-1 no_reservoir", TINY_VIT_SMALL):
        assert f"| {row} " in table, row
    for written in ("compare.csv", "compare_summary.csv", "compare.png"):
        assert (folder / "comparison" / written).is_file()


def dynamics(folder: Path, outputs: dict[str, str]) -> None:
    measured = json.loads((folder / "dynamics.json").read_text())
    assert measured, "dynamics.json is empty"
    snippets = [text for where, text in outputs.items() if re.fullmatch(r"\S+\.md:\d+", where)]  # Python blocks
    assert snippets and snippets[-1].strip() == "0.900000"  # W scaled to α = 0.9, as the page prints


def robustness(folder: Path, outputs: dict[str, str]) -> None:
    for run in ("vir-corrupted/version_0", "visiontransformer-corrupted/version_0", "vir-corrupted/version_1"):
        for written in ("corruption_accuracy.csv", "corruption_summary.json", "corruption_heatmap.png"):
            assert (folder / "logs" / run / written).is_file(), f"{run}/{written}"
    assert (folder / "logs" / "vir-corrupted" / "version_1" / "corruption_paired.csv").is_file()
    summary = json.loads((folder / "logs/vir-corrupted/version_1/corruption_summary.json").read_text())
    assert summary.get("reference"), "the reference run was not used"
    table = (folder / "robustness" / "robustness.md").read_text()
    for row in ("ViR-1", TINY_VIT_SMALL):  # the two ViR runs are one model's two runs, ViT-Small the other row
        assert f"| {row} " in table, row
    assert (folder / "robustness" / "robustness.csv").is_file()


def perturbation(folder: Path, outputs: dict[str, str]) -> None:
    for written in ("perturbation.png", "perturbation.csv", "perturbation.json"):
        assert (folder / "perturbation" / written).is_file()


def vit_slim(folder: Path, outputs: dict[str, str]) -> None:
    for budget in ("0.50", "0.60", "0.70", "0.80"):
        assert (folder / "slim" / f"slim-b{budget}.ckpt").is_file() and (
            folder / "slim" / f"slim-b{budget}.yaml"
        ).is_file()
    assert (folder / "logs" / "slimvit-cifar10" / "version_0" / "checkpoints" / "last.ckpt").is_file()


def mptq_vit(folder: Path, outputs: dict[str, str]) -> None:
    rows = json.loads((folder / "quantization" / "quantization.json").read_text())
    assert rows


def resume(folder: Path, outputs: dict[str, str]) -> None:
    runs = sorted(path.name for path in (folder / "logs" / "vir-digits").iterdir())
    assert runs == ["version_0"]  # resumed in the same folder, no new version
    from lit_vir.training.checkpoints import read_checkpoint

    assert read_checkpoint(folder / "logs/vir-digits/version_0/checkpoints/last.ckpt")["epoch"] == 3  # 4 epochs: 0..3


def sweeps(folder: Path, outputs: dict[str, str]) -> None:
    assert "4 complete, 0 pruned, 0 failed" in outputs["lit-vir sweep run -c configs/sweep/digits.yaml"]  # 2 × 2 seeds
    status = outputs["lit-vir sweep status -c configs/sweep/digits.yaml"]
    assert status.count("│ complete │") == 4, status
    runs = sorted(
        path.relative_to(folder / "sweeps/digits/runs").as_posix() for path in folder.glob("sweeps/digits/runs/*/*")
    )
    assert runs == ["no_reservoir/t001-s1", "no_reservoir/t003-s2", "vir/t000-s1", "vir/t002-s2"], runs
    table = (folder / "comparison" / "compare.md").read_text()
    for row in ("ViR-1", "ViR-1 no_reservoir"):
        assert f"| {row} " in table, row
    assert "2 complete, 0 pruned, 0 failed" in outputs["lit-vir sweep run -c configs/sweep/digits_reservoir.yaml"]
    assert (folder / "sweeps/digits_reservoir/report/report.md").is_file()


CHECKS: dict[str, Callable[[Path, dict[str, str]], None]] = {
    "docs/getting-started/quickstart.md": quickstart,
    "docs/reference/training.md": run_folders,
    "docs/getting-started/first-comparison.md": first_comparison,
    "docs/how-to/equal-compute.md": equal_compute,
    "docs/how-to/dynamics.md": dynamics,
    "docs/how-to/robustness.md": robustness,
    "docs/how-to/perturbation.md": perturbation,
    "docs/how-to/vit-slim.md": vit_slim,
    "docs/how-to/mptq-vit.md": mptq_vit,
    "docs/how-to/resume.md": resume,
    "docs/sweeps.md": sweeps,
}


@pytest.mark.parametrize(
    "page",
    [pytest.param(page, id=name(page), marks=[pytest.mark.slow] if name(page) in SLOW else []) for page in RUN_PAGES],
)
def test_the_page_runs_and_does_what_it_says(page, tmp_path, monkeypatch, capsys, caplog):
    the_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    outputs: dict[str, str] = {}
    with caplog.at_level(logging.INFO, logger="lit_vir"):
        for block in run_here(page):
            for command, output in run_block(block, capsys):
                outputs[str(command)] = output
    if name(page) in CHECKS:
        CHECKS[name(page)](tmp_path, outputs)


@pytest.mark.parametrize("page", [pytest.param(page, id=name(page)) for page in RUN_PAGES if name(page) in SLOW])
def test_the_slow_pages_commands_parse_in_the_fast_suite(page, monkeypatch, capsys):
    """The slow pages run only under `pytest -m slow`; here every command of theirs is parsed with `--print_config`
    (every option and config piece read and checked, nothing built or trained), so a renamed option or piece fails
    the fast suite too."""
    from lit_vir.cli import main

    monkeypatch.chdir(REPO)
    for block in run_here(page):
        if block.language != "bash":
            continue
        for command in commands(block):
            try:
                main([*command.argv, "--print_config"])
                code = 0
            except SystemExit as exit_info:
                code = exit_info.code if isinstance(exit_info.code, int) else (0 if exit_info.code is None else 1)
            printed = capsys.readouterr()
            assert code == 0, f"{block.where}: `{command}` does not parse (exit {code}):\n{printed.err[-3000:]}"
            assert "trainer:" in printed.out or command.argv[0] not in ("fit", "validate", "test", "predict")
