"""CorruptionReport in a real `Trainer.test`: a model whose every prediction is known (it reads the class off the
image) on hand-made cells, so every accuracy, file row, logged scalar and paired difference is a count by hand."""

from __future__ import annotations

import csv
import json

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import TensorDataset

from lit_vir.data.corrupted import CLEAN, CorruptionBenchmarkDataModule
from lit_vir.robustness.intervals import corruption_intervals
from lit_vir.training.callbacks.corruption_report import CorruptionReport
from lit_vir.training.callbacks.test_predictions import TestPredictions
from lit_vir.training.module import ImageClassifier

IMAGES = 20  # per cell
# How many of each cell's 20 images the model gets right (the first ones), per (corruption, severity).
CORRECT = {(CLEAN, 0): 19, ("gaussian_noise", 1): 15, ("gaussian_noise", 2): 11, ("fog", 1): 17, ("fog", 2): 6}


class ReadsTheClass(nn.Module):
    """Logits that put the class written in pixel (0, 0) first: the prediction is that pixel's value."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        classes = images[:, 0, 0, 0].round().long()  # (B,)
        return nn.functional.one_hot(classes, 10).float() * 5 + self.bias

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(10))


def cell(correct: int, shift: int = 0) -> TensorDataset:
    """20 images with labels 0..9 twice; the first `correct` carry their label, the rest label + 1 (mod 10),
    shifted by `shift` (another model's mistakes on the same images)."""
    labels = torch.arange(IMAGES) % 10
    predicted = torch.where(torch.arange(IMAGES) < correct, labels, (labels + 1 + shift) % 10)
    images = torch.zeros(IMAGES, 1, 2, 2)
    images[:, 0, 0, 0] = predicted.float()
    return TensorDataset(images, labels)


class HandMadeCells(CorruptionBenchmarkDataModule):
    num_classes, image_size, in_channels, mean, std = 10, 2, 1, (0.0,), (1.0,)

    def __init__(self, correct: dict[tuple[str, int], int] = CORRECT, **options) -> None:
        super().__init__(["gaussian_noise", "fog"], [1, 2], include_clean=True, batch_size=6, **options)
        self.correct = correct

    def cell_dataset(self, corruption: str, severity: int) -> TensorDataset:
        return cell(self.correct[(corruption, severity)])

    def clean_dataset(self) -> TensorDataset:
        return cell(self.correct[(CLEAN, 0)])


def run_test(folder, callback: CorruptionReport, data: L.LightningDataModule | None = None) -> list[dict[str, str]]:
    trainer = L.Trainer(
        logger=CSVLogger(folder, name="run", version=0),
        callbacks=[callback, TestPredictions()],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.test(ImageClassifier(ReadsTheClass()), datamodule=data or HandMadeCells())
    with open(folder / "run" / "version_0" / "metrics.csv") as stream:
        return list(csv.DictReader(stream))


def test_every_cell_and_the_mean_are_counted_written_and_logged(tmp_path):
    report = CorruptionReport()
    assert (report.summary, report.paired, report.cells) == (None, None, [])  # nothing before a test
    rows = run_test(tmp_path, report)
    run = tmp_path / "run" / "version_0"
    with open(run / "corruption_accuracy.csv") as stream:
        table = {(row["corruption"], int(row["severity"])): row for row in csv.DictReader(stream)}
    assert set(table) == set(CORRECT) - {(CLEAN, 0)}  # the clean cell is the summary's clean accuracy
    for key, correct in CORRECT.items():
        if key == (CLEAN, 0):
            continue
        assert float(table[key]["accuracy"]) == pytest.approx(correct / IMAGES)
        assert float(table[key]["error"]) == pytest.approx(1 - correct / IMAGES)
    summary = json.loads((run / "corruption_summary.json").read_text())
    assert summary["clean_accuracy"] == pytest.approx(19 / 20)
    assert summary["per_corruption"] == pytest.approx({"gaussian_noise": 26 / 40, "fog": 23 / 40})
    assert summary["mean_corruption_accuracy"] == pytest.approx((26 / 40 + 23 / 40) / 2)
    assert (run / "corruption_heatmap.png").stat().st_size > 0
    # the intervals are the intervals module's, on these exact outcome rows (cells × images, test-set order)
    outcomes = np.array([[1] * CORRECT[key] + [0] * (IMAGES - CORRECT[key]) for key in report.cells], dtype=np.int8)
    expected = corruption_intervals(report.cells, [outcomes])
    for index, key in enumerate(report.cells[1:], start=1):
        bounds = (float(table[key]["accuracy_low"]), float(table[key]["accuracy_high"]))
        assert bounds == pytest.approx((expected.low[index], expected.high[index]))
    logged = {key: float(value) for row in rows for key, value in row.items() if value and key.startswith("robust")}
    assert logged == pytest.approx(
        {
            "robustness/acc/gaussian_noise/s1": 0.75,
            "robustness/acc/gaussian_noise/s2": 0.55,
            "robustness/acc/fog/s1": 0.85,
            "robustness/acc/fog/s2": 0.30,
            "robustness/acc/gaussian_noise": 0.65,
            "robustness/acc/fog": 0.575,
            "robustness/clean_acc": 0.95,
            "robustness/mean_corruption_acc": 0.6125,
        }
    )  # no mce without a reference


def test_output_dir_and_a_reference_give_ce_and_relative_ce(tmp_path):
    first = run_test(tmp_path / "reference", CorruptionReport())
    assert first
    reference = tmp_path / "reference" / "run" / "version_0" / "corruption_summary.json"
    better = {key: min(IMAGES, value + 2) for key, value in CORRECT.items()}
    report = CorruptionReport(reference=str(reference), output_dir=str(tmp_path / "elsewhere"))
    rows = run_test(tmp_path / "second", report, HandMadeCells(better))
    summary = json.loads((tmp_path / "elsewhere" / "corruption_summary.json").read_text())
    # CE = 100 · Σ_s E_f / Σ_s E_ref; rCE = 100 · Σ_s (E_f − E_f,clean) / Σ_s (E_ref − E_ref,clean)
    noise_ce = 100 * ((3 + 7) / 20) / ((5 + 9) / 20)
    fog_ce = 100 * ((1 + 12) / 20) / ((3 + 14) / 20)
    noise_rce = 100 * ((3 + 7) / 20 - 2 * 0) / ((5 + 9) / 20 - 2 * 0.05)
    fog_rce = 100 * ((1 + 12) / 20 - 2 * 0) / ((3 + 14) / 20 - 2 * 0.05)
    assert summary["corruption_errors"] == pytest.approx({"gaussian_noise": noise_ce, "fog": fog_ce})
    assert summary["relative_corruption_errors"] == pytest.approx({"gaussian_noise": noise_rce, "fog": fog_rce})
    logged = {key: float(value) for row in rows for key, value in row.items() if value and key.startswith("robust")}
    assert logged["robustness/mce"] == pytest.approx((noise_ce + fog_ce) / 2)
    assert logged["robustness/relative_mce"] == pytest.approx((noise_rce + fog_rce) / 2)
    assert not (tmp_path / "second" / "run" / "version_0" / "corruption_summary.json").exists()


def test_a_paired_run_gives_each_cells_difference_and_refuses_other_images(tmp_path):
    run_test(tmp_path / "first", CorruptionReport())
    first = tmp_path / "first" / "run" / "version_0"
    fewer = {key: value - 4 if key[0] == "fog" else value for key, value in CORRECT.items()}
    report = CorruptionReport(paired_with=str(first))
    run_test(tmp_path / "second", report, HandMadeCells(fewer))
    with open(tmp_path / "second" / "run" / "version_0" / "corruption_paired.csv") as stream:
        paired = {(row["corruption"], row["severity"]): row for row in csv.DictReader(stream)}
    differences = {key: float(row["difference"]) for key, row in paired.items() if key[1] not in ("", "mean")}
    assert differences == pytest.approx(
        {
            ("clean", "0"): 0.0,
            ("gaussian_noise", "1"): 0.0,
            ("gaussian_noise", "2"): 0.0,
            ("fog", "1"): -0.2,
            ("fog", "2"): -0.2,
        }
    )
    other_labels = HandMadeCells()
    other_labels.clean_dataset = lambda: TensorDataset(cell(19).tensors[0], (cell(19).tensors[1] + 1) % 10)
    with pytest.raises(ValueError, match=r"was not tested on the same corrupted images \(cells or labels differ\)"):
        run_test(tmp_path / "third", CorruptionReport(paired_with=str(first)), other_labels)


def test_a_datamodule_without_cells_gets_no_report(tmp_path):
    class Plain(L.LightningDataModule):
        def test_dataloader(self):
            return torch.utils.data.DataLoader(cell(7), batch_size=5)

    trainer = L.Trainer(
        logger=CSVLogger(tmp_path, name="run", version=0),
        callbacks=[CorruptionReport()],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.test(ImageClassifier(ReadsTheClass()), datamodule=Plain())
    assert not (tmp_path / "run" / "version_0" / "corruption_accuracy.csv").exists()


@pytest.fixture
def very_wide(monkeypatch):
    """Rich consoles 1,000 columns wide, so a line naming three files is printed on one line."""
    monkeypatch.setenv("COLUMNS", "1000")


def test_the_report_is_printed_and_logged_at_the_trainers_step(tmp_path, capsys, very_wide):
    """After a fit of 3 steps the same Trainer tests: every logged robustness scalar carries step 3, in the CSV
    and in TensorBoard (the heat map too); the console shows the table and names each file written."""
    data = HandMadeCells()
    loader = torch.utils.data.DataLoader(cell(20), batch_size=8)  # 3 training steps
    loggers = [CSVLogger(tmp_path, name="run", version=0), TensorBoardLogger(tmp_path, name="tb", version=0)]
    trainer = L.Trainer(
        logger=loggers,
        callbacks=[CorruptionReport()],
        max_epochs=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = ImageClassifier(ReadsTheClass())
    trainer.fit(model, train_dataloaders=loader)
    capsys.readouterr()
    trainer.test(model, datamodule=data)
    printed = capsys.readouterr().out
    run = tmp_path / "run" / "version_0"
    written = [run / name for name in ("corruption_accuracy.csv", "corruption_summary.json", "corruption_heatmap.png")]
    assert "wrote " + ", ".join(str(path) for path in written) in printed
    assert "gaussian_noise" in printed and "fog" in printed and "mean" in printed.lower()
    with open(run / "metrics.csv") as stream:
        steps = {row["step"] for row in csv.DictReader(stream) if row.get("robustness/clean_acc")}
    assert steps == {"3"}
    events = EventAccumulator(str(tmp_path / "tb" / "version_0"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert [event.step for event in events.Images("robustness/heatmap")] == [3]
    assert [event.step for event in events.Scalars("robustness/clean_acc")] == [3]
    summary = json.loads((run / "corruption_summary.json").read_text())
    assert summary["test_images"] == IMAGES and summary["reference"] is None


def test_without_a_logger_the_files_go_to_the_default_root_and_the_reference_is_named(tmp_path, capsys):
    run_test(tmp_path / "reference", CorruptionReport())
    reference = str(tmp_path / "reference" / "run" / "version_0" / "corruption_summary.json")
    trainer = L.Trainer(
        logger=False,
        default_root_dir=tmp_path / "root",
        callbacks=[CorruptionReport(reference)],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.test(ImageClassifier(ReadsTheClass()), datamodule=HandMadeCells())
    summary = json.loads((tmp_path / "root" / "corruption_summary.json").read_text())
    assert summary["reference"] == reference and summary["mce"] == pytest.approx(100.0)


def test_the_paired_file_names_the_other_run_and_its_table_is_printed(tmp_path, capsys, very_wide):
    run_test(tmp_path / "first", CorruptionReport())
    first = str(tmp_path / "first" / "run" / "version_0")
    capsys.readouterr()
    run_test(tmp_path / "second", CorruptionReport(paired_with=first))
    printed = capsys.readouterr().out
    with open(tmp_path / "second" / "run" / "version_0" / "corruption_paired.csv") as stream:
        assert {row["vs"] for row in csv.DictReader(stream)} == {first}
    assert "/second/run/version_0/corruption_paired.csv" in printed  # in the list of files written
    assert f"Pairedwith{first}:differenceinaccuracy" in "".join(printed.split())  # the title, wrapped to the table


class OneCell(L.LightningDataModule):
    """A datamodule with one cell and a single DataLoader (not a list): Lightning then passes no dataloader_idx."""

    cells = (("fog", 3),)

    def test_dataloader(self):
        return torch.utils.data.DataLoader(cell(13), batch_size=5)


def test_one_cell_from_a_single_loader_is_reported(tmp_path):
    rows = run_test(tmp_path, CorruptionReport(), OneCell())
    assert [float(row["robustness/acc/fog/s3"]) for row in rows if row.get("robustness/acc/fog/s3")] == [13 / 20]
