"""`lit-vir compare`'s reading of one run folder (`lit_vir.commands.runs`), in process on folders written here by
hand: every field of a `Run` against the values put in its files, from a CSVLogger table and from TensorBoard
events, and every folder it must skip with its reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from torch.utils.tensorboard import SummaryWriter

from lit_vir.commands.runs import Run, Skipped, find_runs, read_run, read_runs, scalars
from tests.fakedata import saved_config


def resolved_config(seed) -> dict:
    """ViR-1, the reference recipe, a 15-minute budget, FP32, Fashion-MNIST."""
    backbone = {"class_path": "lit_vir.models.ViR", "init_args": {"depth": 1, "topology": "cycle_jumps"}}
    trainer = {"max_time": "00:00:15:00", "precision": "32-true", "callbacks": []}
    return saved_config(backbone, seed, "FashionMNISTDataModule", trainer)


LOGGED = {  # tag → values in logging order: three validations, one test of each kind
    "val/acc": [0.5, 0.75, 0.625],
    "test/acc": [0.7],
    "test_last/acc": [0.6],
    "params/trainable": [1234.0],
    "params/fixed": [77.0],
    "perf/peak_memory_mib": [900.0, 1100.0, 1000.0],
    "perf/epoch_time_s": [10.0, 30.0, 12.0],
    "perf/fit_time_s": [60.0],
    "perf/train_flops_per_image": [2.0e6],
    "perf/train_flops_total": [3.0e12],
    "perf/images_seen": [4500.0],
    "perf/epochs_completed": [2.5],
    "perf/optimizer_steps": [45.0],
}


def run_folder(root: Path, environment: dict | None = None, seed=1) -> Path:
    folder = root / "run"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(resolved_config(seed)))
    if environment is not None:
        (folder / "environment.yaml").write_text(yaml.safe_dump(environment))
    labels = np.array([3, 1, 4, 1, 5], dtype=np.int16)
    np.savez_compressed(folder / "test_predictions.npz", **{"test/label": labels, "test/prediction": labels})
    return folder


def write_csv_metrics(folder: Path) -> None:
    """What Lightning's CSVLogger writes: one row per logging step, an empty cell for each tag not logged there."""
    tags = list(LOGGED)
    lines = [",".join(["epoch", "step", *tags])]
    for step in range(3):
        cells = [str(LOGGED[tag][step]) if step < len(LOGGED[tag]) else "" for tag in tags]
        lines.append(",".join([str(step), str(10 * step), *cells]))
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")


ENVIRONMENT = {"threads": {"torch_threads": 1, "cpu_affinity": [0, 1]}, "cpu": "AMD EPYC × 2", "cuda_device": None}


def test_every_field_of_a_csv_logger_run_is_the_value_in_its_files(tmp_path):
    folder = run_folder(tmp_path, ENVIRONMENT)
    write_csv_metrics(folder)
    run = read_run(folder)
    assert isinstance(run, Run) and run.logger == "csv"
    assert (run.model, run.recipe, run.dataset, run.seed) == ("ViR-1", "reference", "FashionMNIST", 1)
    assert (run.budget, run.precision, run.length) == ("15m", "32-true", "15m")
    assert run.epochs == 3  # one validation per epoch begun
    assert (run.val_acc_final, run.val_acc_best) == (0.625, 0.75)  # the last and the best
    assert (run.test_acc, run.test_last_acc, run.test_images) == (0.7, 0.6, 5)
    assert (run.trainable_params, run.fixed_params) == (1234, 77)
    assert set(scalars(folder)[0]) == set(LOGGED)  # the logged tags, not the table's epoch and step columns
    assert run.peak_memory_mib == 1100.0 and run.epoch_time_s == 12.0  # the peak; the median epoch
    assert (run.fit_time_s, run.train_flops_per_image, run.train_flops) == (60.0, 2.0e6, 3.0e12)
    assert (run.images_seen, run.epochs_completed, run.optimizer_steps) == (4500, 2.5, 45)
    assert isinstance(run.images_seen, int) and isinstance(run.optimizer_steps, int)
    assert (run.threads, run.cpu_affinity, run.device) == (1, "0,1", "AMD EPYC × 2")
    assert run.correct().tolist() == [1, 1, 1, 1, 1] and run.correct().dtype == np.int8 and run.path == str(folder)
    run.predictions = {"test/label": run.predictions["test/label"]}  # labels without predictions: no outcomes
    assert run.correct() is None and run.labels().tolist() == [3, 1, 4, 1, 5]


def test_tensorboard_events_give_the_same_run(tmp_path):
    folder = run_folder(tmp_path, ENVIRONMENT | {"cuda_device": "NVIDIA H100"})
    writer = SummaryWriter(str(folder))
    for tag, values in LOGGED.items():
        for step, value in enumerate(values):
            writer.add_scalar(tag, value, step)
    writer.close()
    run = read_run(folder)
    assert isinstance(run, Run) and run.logger == "tensorboard"
    assert (run.val_acc_final, run.val_acc_best, run.epochs, run.epoch_time_s) == (0.625, 0.75, 3, 12.0)
    assert run.test_acc == pytest.approx(0.7) and run.images_seen == 4500  # TensorBoard stores float32
    assert run.device == "NVIDIA H100"  # the GPU, where there was one, names the device


@pytest.mark.parametrize(("seed", "expected"), [(7, 7), (True, None), ("7", None), (None, None)])
def test_only_an_integer_seed_is_a_seed(tmp_path, seed, expected):
    folder = run_folder(tmp_path, ENVIRONMENT, seed=seed)
    write_csv_metrics(folder)
    assert read_run(folder).seed == expected


def test_a_run_that_logged_only_its_validation_reads_as_none_for_the_rest(tmp_path):
    folder = run_folder(tmp_path, ENVIRONMENT)
    (folder / "test_predictions.npz").unlink()
    (folder / "metrics.csv").write_text("epoch,step,val/acc,params/trainable\n0,9,0.5,nan\n1,19,0.25,\n")
    run = read_run(folder)
    assert (run.epochs, run.val_acc_final, run.val_acc_best, run.trainable_params) == (2, 0.25, 0.5, None)
    missing = ("test_acc", "test_last_acc", "test_images", "fixed_params", "peak_memory_mib", "epoch_time_s")
    missing += ("fit_time_s", "train_flops", "images_seen", "epochs_completed", "optimizer_steps")
    assert {name: getattr(run, name) for name in missing} == dict.fromkeys(missing)
    assert run.correct() is None and run.predictions == {}


def test_a_run_without_an_environment_record_reads_with_what_it_has(tmp_path):
    folder = run_folder(tmp_path, environment=None)
    write_csv_metrics(folder)
    run = read_run(folder)
    assert (run.threads, run.cpu_affinity, run.device) == (None, "", "unknown")


def test_folders_that_cannot_be_read_are_skipped_with_the_reason(tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "metrics.csv").write_text("epoch,step,val/acc\n0,0,0.5\n")
    assert read_run(bare) == Skipped(str(bare), "no config.yaml (not a folder written by lit-vir fit)")
    silent = run_folder(tmp_path / "silent", ENVIRONMENT)
    assert read_run(silent) == Skipped(str(silent), "no TensorBoard events and no metrics.csv (its logger was off)")
    untested = run_folder(tmp_path / "untested", ENVIRONMENT)
    (untested / "metrics.csv").write_text("epoch,step,test/acc\n0,0,0.5\n")
    reason = "no val/acc logged: it never validated (a test-only run, or stopped before)"
    assert read_run(untested) == Skipped(str(untested), reason)
    assert scalars(silent) is None


def test_every_logged_value_is_read_back_however_many_there_are(tmp_path):
    """TensorBoard keeps 10,000 scalars of a tag by default and samples the rest away: a long run's every
    validation must be read."""
    folder = run_folder(tmp_path, ENVIRONMENT)
    writer = SummaryWriter(str(folder))
    for step in range(10_050):
        writer.add_scalar("val/acc", 0.5 if step != 7_777 else 0.875, step)
    writer.close()
    series, logger = scalars(folder)
    assert logger == "tensorboard" and len(series["val/acc"]) == 10_050 and max(series["val/acc"]) == 0.875


def test_a_folder_is_a_run_with_a_config_a_metrics_table_or_event_files_at_any_depth(tmp_path):
    deep = tmp_path / "sweep" / "runs" / "cell" / "t000-s1"
    deep.mkdir(parents=True)
    (deep / "config.yaml").write_text("{}")
    table, events, neither = tmp_path / "table", tmp_path / "events", tmp_path / "neither"
    for folder in (table, events, neither):
        folder.mkdir()
    (table / "metrics.csv").write_text("epoch,step,val/acc\n0,0,0.5\n")
    (events / "events.out.tfevents.1.host").write_bytes(b"")
    (neither / "notes.txt").write_text("")
    assert find_runs([str(tmp_path / "**")]) == [events, deep, table]  # ** reaches every depth
    with pytest.raises(SystemExit) as stop:
        find_runs([str(neither), str(tmp_path / "missing*")])
    assert str(stop.value) == f"lit-vir compare: no run folder (with config.yaml) matches {neither} {tmp_path}/missing*"


def test_runs_are_found_by_path_or_pattern_and_split_into_read_and_skipped(tmp_path):
    good = run_folder(tmp_path / "a", ENVIRONMENT)
    write_csv_metrics(good)
    skipped = run_folder(tmp_path / "b", ENVIRONMENT)
    (tmp_path / "c").mkdir()  # no config, no scalars: not a run folder at all
    (tmp_path / "d.txt").write_text("a file")
    assert find_runs([str(tmp_path / "*" / "*"), str(tmp_path / "*")]) == [good, skipped]
    read, unread = read_runs([str(tmp_path / "**" / "run")])
    assert [run.path for run in read] == [str(good)] and [run.path for run in unread] == [str(skipped)]
    shutil.rmtree(tmp_path / "a")
    shutil.rmtree(tmp_path / "b")
    with pytest.raises(SystemExit, match=r"^lit-vir compare: no run folder \(with config.yaml\) matches nothing\*$"):
        find_runs(["nothing*"])
