"""`ResourceMonitor`'s numbers from a real Trainer on a tiny model, against counts by hand: images seen, optimiser
steps and fractional epochs completed (the totals `lit-vir compare` reports), throughput as images per epoch time,
the totals carried through a resume, and no epoch count for a dataset without a length."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from lit_vir.training.callbacks.resources import ResourceMonitor, peak_memory_mib
from tests.callback_runs import Tiny, logged, logged_fit


def fit(folder: Path, monitor: ResourceMonitor, loader, **options) -> list[dict[str, str]]:
    return logged_fit(folder, monitor, Tiny(), loader, **options)


def loader(images: int = 50, batch: int = 16) -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(images, 4), torch.arange(images) % 2), batch_size=batch)


def test_the_totals_count_images_steps_and_fractional_epochs(tmp_path):
    started = time.perf_counter()
    rows = fit(tmp_path, ResourceMonitor(), loader(), max_epochs=2)  # 50 images in batches of 16, 16, 16, 2
    wall = time.perf_counter() - started
    assert logged(rows, "perf/images_seen") == [100] and logged(rows, "perf/optimizer_steps") == [8]
    assert logged(rows, "perf/epochs_completed") == [2.0]
    times, rates = logged(rows, "perf/epoch_time_s"), logged(rows, "perf/train_images_per_s")
    assert len(times) == 2 and all(seconds > 0 for seconds in times)
    assert [rate * seconds for rate, seconds in zip(rates, times, strict=True)] == pytest.approx([50, 50], rel=1e-6)
    peak = logged(rows, "perf/peak_memory_mib")
    assert 0 < peak[0] <= peak[1] <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB → MiB
    assert sum(times) <= logged(rows, "perf/fit_time_s")[0] <= wall  # the fit, within the call that ran it
    assert [row["step"] for row in rows if row.get("perf/images_seen")] == ["8"]  # logged at the run's last step


def test_a_partial_epoch_counts_the_images_it_took_of_the_whole_training_set(tmp_path):
    rows = fit(tmp_path, ResourceMonitor(), loader(), max_epochs=1, limit_train_batches=2)
    assert logged(rows, "perf/images_seen") == [32] and logged(rows, "perf/epochs_completed") == [32 / 50]


def test_a_resumed_run_reports_the_whole_runs_totals(tmp_path):
    monitor = ResourceMonitor()
    monitor.load_state_dict({"images_seen": 30, "fit_time_s": 12.5})  # what the interrupted attempt's checkpoint held
    rows = fit(tmp_path, monitor, loader(), max_epochs=1)
    assert logged(rows, "perf/images_seen") == [80] and logged(rows, "perf/epochs_completed") == [80 / 50]
    assert logged(rows, "perf/fit_time_s")[0] > 12.5
    state = monitor.state_dict()
    assert state["images_seen"] == 80 and state["fit_time_s"] > 12.5
    fresh = ResourceMonitor()
    fresh.load_state_dict({})  # a checkpoint written before the totals were kept
    assert fresh.images_seen == 0 and fresh.seconds_before == 0.0


class Stream(IterableDataset):
    def __iter__(self):
        return iter((torch.randn(4), index % 2) for index in range(20))


def test_a_dataset_without_a_length_gets_no_epoch_count(tmp_path):
    rows = fit(tmp_path, ResourceMonitor(), DataLoader(Stream(), batch_size=8), max_epochs=1)
    assert logged(rows, "perf/images_seen") == [20] and not logged(rows, "perf/epochs_completed")


class Batches:
    """Three batches of 5 from a plain iterable: no `dataset` behind them, as a streaming source would give."""

    def __iter__(self):
        return iter([(torch.randn(5, 4), torch.arange(5) % 2) for _ in range(3)])


def test_batches_that_are_not_a_dataloader_get_no_epoch_count(tmp_path):
    rows = fit(tmp_path, ResourceMonitor(), Batches(), max_epochs=1)
    assert logged(rows, "perf/images_seen") == [15] and not logged(rows, "perf/epochs_completed")


def test_a_fresh_monitor_holds_no_images_and_almost_no_time():
    assert ResourceMonitor().state_dict()["images_seen"] == 0
    assert 0 <= ResourceMonitor().state_dict()["fit_time_s"] < 1  # counted from its creation until a fit starts


def test_peak_memory_on_the_cpu_is_the_resident_set_in_mib():
    assert peak_memory_mib(torch.device("cpu")) == resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
