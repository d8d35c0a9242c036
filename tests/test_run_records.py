"""What a run shows people: real FLOPs in the model summary and a row in TensorBoard's HPARAMS tab."""

from __future__ import annotations

import os
import re
import shutil

import pytest
import torch
import yaml
from lightning.pytorch.utilities.model_summary import ModelSummary
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from torch.utils.flop_counter import FlopCounterMode

from lit_vir.cli import main
from lit_vir.models import ViR
from lit_vir.training import ImageClassifier
from tests.conftest import CONFIGS, QUICK_TRAINER

UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def forward_flops(model: torch.nn.Module, images: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(images)
    return counter.get_total_flops()


def test_summary_flops_count_the_recurrence():
    backbone = ViR(10, 8, 1, patch_size=2, embed_dim=8, num_nodes=30, jump_size=4, mlp_dim=16)
    module = ImageClassifier(backbone)
    module.example_input_array = torch.zeros(1, 1, 8, 8)
    recurrence = 15 * 2 * 30 * 30  # 16 tokens: 15 products h_{t−1}·W of (1, N)·(N, N)
    readouts = 2 * 16 * 8 * (8 + 30) + 2 * 16 * 8 * (4 * 8 + 2 * 30)  # W_o and W_q over 16 tokens
    total = ModelSummary(module).total_flops
    assert total == forward_flops(backbone, torch.zeros(1, 1, 8, 8)) and total > recurrence + readouts


def test_a_run_prints_its_flops_and_fills_the_hparams_tab(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            "-c",
            str(CONFIGS / "quickstart.yaml"),
            "--trainer.max_epochs",
            "1",
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    printed = re.search(r"Total FLOPs: ([\d.]+) ?([KMGT]?)", capsys.readouterr().out)
    expected = forward_flops(
        ViR(10, 8, 1, patch_size=2, embed_dim=64, num_nodes=300, jump_size=37, mlp_dim=128), torch.zeros(1, 1, 8, 8)
    )
    mantissa, unit = printed.groups()
    # Lightning prints one decimal, rounded ("12.3 M"), or from 100 up whole units, cut ("123 M"): the printed
    # figure is the count to within that last digit, not to within a share of it
    step = 0.05 if "." in mantissa else 1.0
    assert abs(float(mantissa) - expected / UNITS[unit]) <= step, (printed.group(0), expected)

    events = EventAccumulator(str(tmp_path / "logs" / "vir-digits" / "version_0"))
    events.Reload()
    assert "hp_metric" not in events.Tags()["scalars"]
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {metric.name.tag for metric in experiment.metric_infos} == {"val/acc_best", "test/acc", "test_last/acc"}
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    values = {key: value.string_value or value.number_value for key, value in start.hparams.items()}
    assert values["model"] == "ViR-1" and values["dataset"] == "Digits" and values["recipe"] == "reference"
    assert values["num_nodes"] == 300 and values["spectral_radius"] == 0.9 and values["seed"] == 42
    for tag in ("val/acc_best", "test/acc", "test_last/acc"):
        assert tag in events.Tags()["scalars"], tag  # the tab's metric columns have values


@pytest.mark.skipif(
    shutil.which("taskset") is None or not hasattr(os, "sched_getaffinity"),
    reason="needs Linux's taskset (util-linux) and CPU affinity",
)
def test_the_environment_record_holds_the_cores_taskset_gave_the_run(tmp_path, run_cli):
    """The console script under `taskset -c CORE`: environment.yaml records that affinity, the torch threads and
    the thread settings of the environment, and the load average at start and end."""
    core = min(os.sched_getaffinity(0))
    run_cli(
        "fit",
        "-c",
        str(CONFIGS / "quickstart.yaml"),
        *QUICK_TRAINER,
        "--test_after_fit",
        "false",
        prefix=["taskset", "-c", str(core)],
    )
    environment = yaml.safe_load((tmp_path / "logs" / "vir-digits" / "version_0" / "environment.yaml").read_text())
    threads = environment["threads"]
    assert threads["cpu_affinity"] == [core]
    assert threads["OMP_NUM_THREADS"] == "1" and threads["torch_threads"] == 1  # run_cli sets OMP_NUM_THREADS=1
    assert threads["cpu_count"] == os.cpu_count()
    for key in ("load_average_start", "load_average_end"):
        assert len(environment[key]) == 3 and all(isinstance(value, float) for value in environment[key])
