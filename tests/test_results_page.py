"""docs/results.md's tables against the raw files they come from: each number the page prints for the tuned table and
the robustness table is read back from the committed compare_summary.csv and robustness.csv, so a rerun that is not
copied into the page, or a page edited by hand, fails here."""

from __future__ import annotations

import csv
import re
from functools import partial
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "results.md"
RAW = ROOT / "docs" / "measurements" / "results-fmnist"
LABELS = {"ViR-1": "ViR-1", "`no_reservoir`": "ViR-1 no_reservoir", "`memoryless`": "ViR-1 memoryless"}
ROBUSTNESS_LABELS = LABELS | {"ViT-Small (reference recipe)": "ViT-Small-9"}


def page_table(heading: str) -> list[list[str]]:
    """The first Markdown table after `heading`: its body rows as lists of cells (the header and rule left out)."""
    text = PAGE.read_text()
    lines = text[text.index(heading) :].splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("|"))
    block = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        block.append([cell.strip() for cell in line.strip("|").split("|")])
    return block[2:]


def numbers(text: str) -> list[float]:
    """The numbers of a cell as the page prints them: Unicode minus and thousands separators read as numbers."""
    return [float(value.replace(",", "")) for value in re.findall(r"[-+]?\d[\d,]*\.?\d*", text.replace("−", "-"))]


def summary(folder: Path = RAW) -> dict[str, dict[str, str]]:
    with (folder / "compare_summary.csv").open() as stream:
        return {row["model"]: row for row in csv.DictReader(stream)}


@pytest.mark.parametrize("label", list(LABELS))
def test_the_tuned_tables_row_is_compare_summary_csv(label):
    rows = {row[0]: row for row in page_table("## The 15-minute table at the tuned rates")}
    page, raw = rows[label], summary()[LABELS[label]]
    assert int(page[1]) == int(raw["runs"])
    assert numbers(page[2]) == numbers(raw["test acc % (best val) [95% CI]"])
    assert numbers(page[4]) == numbers(raw["t-interval over seeds"])
    if label != "ViR-1":
        assert numbers(page[5]) == numbers(raw["Δ vs baseline, points [95% CI]"])
        assert page[6].endswith(f"(sign-flip {raw['p'].split('sign-flip ')[1]}")
    assert numbers(page[7]) == numbers(raw["epochs completed"])
    assert numbers(page[8]) == numbers(raw["images seen"])
    assert numbers(page[9]) == numbers(raw["trainable"]) and numbers(page[10]) == numbers(raw["fixed"])


@pytest.mark.parametrize("label", list(ROBUSTNESS_LABELS))
def test_the_robustness_tables_row_is_robustness_csv(label):
    rows = {row[0]: row for row in page_table("## Robustness")}
    page = rows[label]
    with (RAW / "robustness" / "robustness.csv").open() as stream:
        raw = {(row["model"], row["corruption"]): row for row in csv.DictReader(stream)}

    def percent(row: dict[str, str], *keys: str) -> list[float]:
        return [round(100 * float(row[key]), 2) for key in keys]

    clean, mean = raw[ROBUSTNESS_LABELS[label], "clean"], raw[ROBUSTNESS_LABELS[label], "mean (benchmark cells)"]
    assert len(page[1].split(",")) == int(mean["seeds"])
    assert numbers(page[2]) == percent(clean, "accuracy", "low", "high")
    assert numbers(page[3]) == percent(mean, "accuracy", "low", "high")
    if label != "ViR-1":
        assert numbers(page[4]) == percent(mean, "difference", "difference_low", "difference_high")


@pytest.mark.parametrize("label", list(LABELS))
def test_the_equal_epoch_tables_row_is_its_compare_summary_csv(label):
    rows = {row[0]: row for row in page_table("## Equal epochs")}
    page, raw = rows[label], summary(RAW / "epochs")[LABELS[label]]
    assert int(page[1]) == int(raw["runs"]) and raw["length"] == "10 epochs"
    assert numbers(page[2]) == numbers(raw["test acc % (best val) [95% CI]"])
    assert numbers(page[3]) == numbers(raw["t-interval over seeds"])
    if label != "ViR-1":
        assert numbers(page[4]) == numbers(raw["Δ vs baseline, points [95% CI]"])
        assert page[5].endswith(f"(sign-flip {raw['p'].split('sign-flip ')[1]}")


def in_percent(run: dict[str, str], *keys: str) -> list[float]:
    return [round(100 * float(run[key]), 2) for key in keys]


def topology_tables() -> tuple[list[list[str]], list[list[str]]]:
    """docs/topology.md's two accuracy tables (per topology over seeds, then per run): their body rows."""
    text = (ROOT / "docs" / "topology.md").read_text()
    lines = text[text.index("## Accuracy on Fashion-MNIST") :].splitlines()
    tables, index = [], 0
    while len(tables) < 2:
        while not lines[index].startswith("| topology"):
            index += 1
        rows = []
        for line in lines[index + 2 :]:
            if not line.startswith("|"):
                break
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        tables.append(rows)
        index += 2 + len(rows)
    return tables[0], tables[1]


def topology_model(cell: str) -> str:
    name = cell.split("`")[1]
    return "ViR-1" if name == "cycle_jumps" else f"ViR-1 {name}"


def test_the_topology_summary_rows_are_compare_summary_csv():
    """Each topology over its seeds: the accuracy, the paired difference and its p against compare_summary.csv,
    the seeds against the runs compared."""
    summary_rows, _ = topology_tables()
    folder = ROOT / "docs" / "measurements" / "topology" / "accuracy-fmnist"
    raw = summary(folder)
    with (folder / "compare.csv").open() as stream:
        runs = list(csv.DictReader(stream))
    assert len(summary_rows) == 6
    for row in summary_rows:
        model = topology_model(row[0])
        seeds = sorted(int(run["seed"]) for run in runs if run["model"] == model)
        assert [int(seed) for seed in row[1].split(",")] == seeds, model
        assert int(raw[model]["runs"]) == len(seeds)
        assert numbers(row[2]) == numbers(raw[model]["test acc % (best val) [95% CI]"]), model
        assert row[3] == raw[model]["CI over"]
        if model != "ViR-1":
            assert numbers(row[4]) == numbers(raw[model]["Δ vs baseline, points [95% CI]"]), model
            assert row[5] == raw[model]["p"], model
        assert numbers(row[6]) == numbers(raw[model]["test acc % (final)"])
        assert numbers(row[7]) == numbers(raw[model]["epochs completed"])


def test_the_topology_per_run_rows_are_the_compared_runs():
    """Each run of each topology against the per-run CSV of its `compare` (paired with cycle_jumps's run of the
    same seed), and every compared run in the table."""
    _, run_rows = topology_tables()
    with (ROOT / "docs" / "measurements" / "topology" / "accuracy-fmnist" / "compare.csv").open() as stream:
        runs = {(run["model"], run["seed"]): run for run in csv.DictReader(stream)}
    assert sorted((topology_model(row[0]), row[1]) for row in run_rows) == sorted(runs)
    for row in run_rows:
        run = runs[topology_model(row[0]), row[1]]
        percent = partial(in_percent, run)
        assert numbers(row[2]) == percent("test_acc", "test_acc_low", "test_acc_high"), row[0]
        assert numbers(row[5]) == percent("test_last_acc")
        assert numbers(row[6]) == [round(float(run["epochs_completed"]), 2)]
        if run["model"] != "ViR-1":
            assert numbers(row[3]) == percent("difference", "difference_low", "difference_high"), row[0]
            assert float(row[4]) == pytest.approx(float(run["p"]), abs=0.006), row[0]


def test_the_ridge_tables_rows_are_its_compare_summary_csv():
    """docs/topology.md's ridge-at-equal-time table and the per-seed differences its text quotes, against the CSVs of
    its `compare` (rows told apart by their budget: one pass, 130 s, 4 minutes)."""
    text = (ROOT / "docs" / "topology.md").read_text()
    section = text[text.index("### Measured on Fashion-MNIST: the ridge") :]
    lines = section.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("| model"))
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[start + 2 : start + 5]]
    folder = ROOT / "docs" / "measurements" / "topology" / "ridge-equal-time"
    with (folder / "compare_summary.csv").open() as stream:
        raw = {row["length"]: row for row in csv.DictReader(stream)}
    for row, length in zip(rows, ["1 epochs", "2m10s", "4m"], strict=True):
        summary_row = raw[length]
        assert numbers(row[2]) == numbers(summary_row["test acc % (best val) [95% CI]"]), length
        assert numbers(row[6]) == numbers(summary_row["trainable"])
        assert numbers(row[7])[0] == numbers(summary_row["train FLOPs"])[0]
        if length != "1 epochs":
            assert numbers(row[3]) == numbers(summary_row["Δ vs baseline, points [95% CI]"]), length
            assert float(row[4]) == numbers(summary_row["p"].split("sign-flip ")[1])[0]
    with (folder / "compare.csv").open() as stream:
        per_seed = [run for run in csv.DictReader(stream) if "vir1_130s" in run["path"]]
    quoted = sorted(round(100 * float(run["difference"]), 2) for run in per_seed)
    assert f"+{quoted[0]:.2f}, +{quoted[1]:.2f} and +{quoted[2]:.2f} points" in section


BASELINES = {  # the page's row → (model, recipe) in compare_summary.csv
    "ViT-Small, reference recipe": ("ViT-Small-9", "reference"),
    "ViT-Small, from-scratch recipe": ("ViT-Small-9", "from-scratch"),
    "ResNet-18 (timm), from-scratch recipe": ("timm/resnet18", "from-scratch"),
    "linear classifier on pixels": ("PixelLinear", "reference"),
    "MLP on pixels": ("PixelMLP", "reference"),
    "small CNN": ("SmallCNN", "reference"),
}


def test_the_tuned_baselines_rows_are_compare_summary_csv():
    """The baselines at their tuned rates: every row the page shows against its row of compare_summary.csv (rows told
    apart by model and recipe), and the page shows every baseline row the CSV has."""
    with (RAW / "compare_summary.csv").open() as stream:
        raw = {(row["model"], row["recipe"]): row for row in csv.DictReader(stream)}
    rows = page_table("## The baselines at their tuned rates")
    assert {BASELINES[row[0]] for row in rows} == set(raw) - {(model, "reference") for model in LABELS.values()}
    for row in rows:
        summary_row = raw[BASELINES[row[0]]]
        assert int(row[1]) == int(summary_row["runs"]) == 3, row[0]
        assert numbers(row[2]) == numbers(summary_row["test acc % (best val) [95% CI]"]), row[0]
        assert numbers(row[3]) == numbers(summary_row["t-interval over seeds"]), row[0]
        assert numbers(row[4]) == numbers(summary_row["Δ vs baseline, points [95% CI]"]), row[0]
        assert row[5] == summary_row["p"], row[0]  # the paired bootstrap's p, the sign-flip p beside it
        assert numbers(row[6]) == numbers(summary_row["epochs completed"]), row[0]
        assert numbers(row[7]) == numbers(summary_row["images seen"]), row[0]
        assert numbers(row[8]) == numbers(summary_row["trainable"]), row[0]


def test_the_baselines_per_seed_lines_are_compare_csv():
    """Each per-seed line of the baselines section: the test accuracies and the differences against ViR-1's run of
    the same seed, read back from compare.csv."""
    text = PAGE.read_text()
    section = text[text.index("## The baselines at their tuned rates") : text.index("## Equal epochs")]
    with (RAW / "compare.csv").open() as stream:
        runs = list(csv.DictReader(stream))
    # the per-seed lines name the rows shorter than the table, in the table's order
    short = ["ViT-Small, reference", "ViT-Small, from scratch", "ResNet-18", "linear", "MLP", "small CNN"]
    starts = {f"{name}:": key for name, key in zip(short, BASELINES.values(), strict=True)}
    for start, key in starts.items():
        line = next(line for line in section.splitlines() if line.startswith(f"- {start}"))
        mine = sorted((run for run in runs if (run["model"], run["recipe"]) == key), key=lambda run: int(run["seed"]))
        accuracies = [round(100 * float(run["test_acc"]), 2) for run in mine]
        differences = [round(100 * float(run["difference"]), 2) for run in mine]
        rest = line.split(":", 1)[1]
        assert numbers(rest)[:3] == accuracies, start
        signed = [float(value.replace("−", "-")) for value in re.findall(r"[+−-]\d+\.\d+", rest)]
        assert signed == differences, start
