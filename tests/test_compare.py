"""`lit-vir compare` on two real (tiny) runs: the tables and the plot hold both, with the logged numbers."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy import stats
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_vir.cli import main
from lit_vir.training.callbacks.test_predictions import read_predictions
from lit_vir.training.labels import model_label
from tests.conftest import CONFIGS, QUICK_TRAINER, TINY_VIR
from tests.fakedata import write_mnist

TINY_VIT = [
    "-c",
    str(CONFIGS / "model" / "vit_base.yaml"),
    "--model.backbone.init_args.embed_dim",
    "24",
    "--model.backbone.init_args.num_heads",
    "2",
    "--model.backbone.init_args.patch_size",
    "7",
]


def logged(run, tag: str) -> list[float]:
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return [event.value for event in events.Scalars(tag)]


def test_compare_two_real_runs(tmp_path, monkeypatch):
    write_mnist(tmp_path / "data", train=200, test=40)
    monkeypatch.chdir(tmp_path)
    common = [
        "-c",
        str(CONFIGS / "vir.yaml"),
        *QUICK_TRAINER,
        "--trainer.max_epochs",
        "2",
        "--data.init_args.download",
        "false",
        "--test_after_fit",
        "true",
    ]
    main(["fit", *common, *TINY_VIR])
    main(["fit", *common, *TINY_VIT])
    main(["compare", "logs/*/version_*", "--output", "comparison", "--title", "tiny", "--baseline", "ViR-1"])
    vir, vit = (
        tmp_path / "logs" / "vir-mnist" / "version_0",
        tmp_path / "logs" / "visiontransformer-mnist" / "version_0",
    )

    with open(tmp_path / "comparison" / "compare.csv") as stream:
        rows = {row["model"]: row for row in csv.DictReader(stream)}
    assert set(rows) == {"ViR-1", "ViT-D24-1"}
    assert float(rows["ViR-1"]["test_acc"]) == logged(vir, "test/acc")[-1]
    assert float(rows["ViT-D24-1"]["val_acc_best"]) == max(logged(vit, "val/acc"))
    assert int(rows["ViR-1"]["epochs"]) == 2
    assert rows["ViR-1"]["precision"] == "32-true"  # from the saved config (configs/vir.yaml)
    # what the run did: 2 epochs of the 180-image training split (200 − 10%), in batches of 100 and 80
    assert int(rows["ViR-1"]["images_seen"]) == 360
    assert float(rows["ViR-1"]["epochs_completed"]) == pytest.approx(2.0)
    assert int(rows["ViR-1"]["optimizer_steps"]) == 4
    assert rows["ViR-1"]["threads"] == "1"

    # the per-image predictions give back the logged test accuracy, and the paired test is McNemar's on them
    ours, theirs = read_predictions(vit), read_predictions(vir)
    assert (ours["test/label"] == ours["test/prediction"]).mean() == pytest.approx(
        logged(vit, "test/acc")[-1], abs=1e-6
    )
    assert np.array_equal(ours["test/label"], theirs["test/label"]) and len(ours["test/label"]) == 40
    a, b = ours["test/label"] == ours["test/prediction"], theirs["test/label"] == theirs["test/prediction"]
    only_vit, only_vir = int(np.sum(a & ~b)), int(np.sum(~a & b))
    assert float(rows["ViT-D24-1"]["difference"]) == pytest.approx((only_vit - only_vir) / 40)
    expected_p = (
        min(1.0, 2 * stats.binom.cdf(min(only_vit, only_vir), only_vit + only_vir, 0.5)) if only_vit + only_vir else 1.0
    )
    assert float(rows["ViT-D24-1"]["p"]) == pytest.approx(expected_p)
    assert rows["ViT-D24-1"]["test"] == "McNemar exact"

    text = (tmp_path / "comparison" / "compare.md").read_text()
    for run, model in ((vir, "ViR-1"), (vit, "ViT-D24-1")):
        row = next(
            line for line in text.splitlines() if line.startswith(f"| {model} | reference | MNIST | 2 epochs | 1 |")
        )
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[5].startswith(f"{100 * logged(run, 'test/acc')[-1]:.2f} [")
        assert cells[6] == "images"
        assert cells[11] == f"{100 * logged(run, 'test_last/acc')[-1]:.2f}"
        assert cells[12] == f"{100 * max(logged(run, 'val/acc')):.2f}"
        assert cells[13] == "40"
    assert "(baseline)" in text and "Peak memory: the process's peak resident set size" in text
    assert (tmp_path / "comparison" / "compare.png").stat().st_size > 0
    assert (tmp_path / "comparison" / "compare_summary.csv").exists()


def test_a_csv_logger_run_is_read_and_an_unreadable_folder_is_named(tmp_path, monkeypatch, capsys):
    write_mnist(tmp_path / "data", train=200, test=40)
    monkeypatch.chdir(tmp_path)
    logger = ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.init_args.save_dir", "logs"]
    main(
        [
            "fit",
            "-c",
            str(CONFIGS / "vir.yaml"),
            *QUICK_TRAINER,
            *TINY_VIR,
            "--data.init_args.download",
            "false",
            "--test_after_fit",
            "true",
            *logger,
        ]
    )
    (tmp_path / "logs" / "broken").mkdir()
    (tmp_path / "logs" / "broken" / "config.yaml").write_text("data: {}\n")
    capsys.readouterr()
    main(["compare", "logs/*", "--output", "comparison"])
    shown = capsys.readouterr().out
    assert "skipped logs/broken: no TensorBoard events and no metrics.csv" in shown
    with open(tmp_path / "comparison" / "compare.csv") as stream:
        (row,) = list(csv.DictReader(stream))
    with open(tmp_path / "logs/version_0/metrics.csv") as stream:
        metrics = list(csv.DictReader(stream))
    assert row["logger"] == "csv"
    assert float(row["test_acc"]) == float(next(m["test/acc"] for m in metrics if m.get("test/acc")))


@pytest.mark.parametrize(
    ("class_name", "options", "label"),
    [
        ("MobileViT", {}, "MobileViT"),
        ("MobileViT", {"extension": None}, "MobileViT"),
        ("MobileViT", {"extension": 928}, "ExMobileViT-928"),
        ("MobileViT", {"extension": [32, 64, 480]}, "ExMobileViT-32/64/480"),
        ("ViR", {"depth": 3, "mode": "serial"}, "ViR-3 serial"),
        ("ViR", {"depth": 1, "use_reservoir": False}, "ViR-1 no_reservoir"),
        ("VisionTransformer", {"depth": 9, "embed_dim": 192}, "ViT-Small-9"),
    ],
)
def test_each_model_has_its_own_row_label(class_name, options, label):
    """ExMobileViT is MobileViT with the `extension` classifier: without its own label compare pooled the two."""
    backbone = {"class_path": f"lit_vir.models.{class_name}", "init_args": options}
    config = {"model": {"init_args": {"backbone": backbone}}}
    assert model_label(config) == label


def test_compare_parses_its_defaults_and_documents_each_option(capsys):
    from lit_vir.commands.compare import parser

    arguments = parser().parse_args(["logs/a", "logs/b"])
    assert arguments.runs == ["logs/a", "logs/b"] and arguments.output == "comparison"
    assert arguments.title == "ViR against ViT" and arguments.corruptions is False and arguments.baseline is None
    chosen = parser().parse_args(["x", "--baseline", "ViR-1", "--corruptions", "true", "--output", "o", "--title", "t"])
    assert (chosen.baseline, chosen.corruptions, chosen.output, chosen.title) == ("ViR-1", True, "o", "t")
    assert parser().parse_args(["x", "--baseline", "null"]).baseline is None  # str | None, not the string "null"
    shown = {action.dest: " ".join(action.help.split()) for action in parser()._actions if action.help}
    assert shown["runs"] == "run folders or glob patterns"
    assert shown["output"] == "folder for the tables and the plot"
    assert shown["title"] == "title of the plot and the Markdown file"
    assert shown["corruptions"] == (
        "the runs are `lit-vir test` runs on a corruption benchmark: write robustness.md/.csv (every model's clean "
        "and mean corruption accuracy and each corruption's, with intervals over seeds and images, and the paired "
        "difference against --baseline)"
    )
    assert shown["baseline"] == (
        'the row every other is compared with, image by image: its model label (e.g. "ViR-1"), or label and recipe '
        'as shown (e.g. "ViT-Small-9 (from-scratch)")'
    )
    assert parser().description == (
        "`lit-vir compare`: turn finished runs into the comparison table, with every accuracy's uncertainty."
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--help"])
    printed = " ".join(capsys.readouterr().out.split())  # the help text, its line breaks undone
    assert exit_info.value.code == 0 and printed.startswith("usage: lit-vir compare")
    assert 'lit-vir compare "sweeps/fmnist_table/runs/*/*" --baseline ViR-1 --output results' in printed
    assert "Epochs completed: images seen / training-set size." in printed
