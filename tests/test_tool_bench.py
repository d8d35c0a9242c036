"""`lit-vir bench` piece by piece, in this process where it can be: its options and their refusals word for word,
the pieces a model spec composes, the timer's median against a clock stepped by hand, the resident-memory readings
against psutil and an allocation of known size, the printed table's every cell, and one real run of its worker
processes (started from the current folder, so that they import the same lit_vir as this process)."""

from __future__ import annotations

import json
import resource
from types import SimpleNamespace

import psutil
import pytest
import torch

from lit_vir.checks import ConfigError
from lit_vir.commands import bench
from lit_vir.models.counting import count_parameters
from tests.conftest import CONFIGS, TINY_OVERRIDES


def options(*argv: str):
    return bench.parser().parse_args(list(argv))


def test_the_options_their_defaults_and_their_help_word_for_word():
    defaults = options()
    assert defaults.models == bench.DEFAULT_MODELS and defaults.data == "cifar10" and defaults.batch_size == 100
    assert defaults.precision == ["32-true"] and defaults.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert (defaults.warmup, defaults.repeats, defaults.configs_dir) == (3, 10, "configs")
    assert (defaults.pieces, defaults.overrides, defaults.output) == ([], [], "bench.json")
    shown = {action.dest: " ".join(action.help.split()) for action in bench.parser()._actions if action.help}
    assert shown["models"] == "model specs, e.g. vir-12 vit_base-12"
    assert shown["data"] == "shapes of configs/data/<data>.yaml (no data is read)"
    assert shown["batch_size"] == "images per step"
    assert shown["precision"] == "as trainer.precision"
    assert shown["device"] == "where to measure"
    assert shown["warmup"] == "untimed runs before timing"
    assert shown["repeats"] == "timed runs; the median counts"
    assert shown["configs_dir"] == "where the config pieces are"
    assert shown["pieces"] == "config pieces composed after every model's, e.g. a recipe"
    assert shown["overrides"] == (
        "dotted overrides of every model's config, as for `lit-vir fit`: model.backbone.init_args.depth=2"
    )
    assert shown["output"] == "the JSON file of the measurements"
    assert bench.parser().description == (
        "`lit-vir bench`: parameters, memory and speed of models built from the configs, ViR against ViT."
    )
    assert bench.parser().epilog == bench.EXAMPLES
    chosen = options("--models", "vir-2", "--precision", "32-true", "bf16-mixed", "--batch_size", "7")
    assert (chosen.models, chosen.precision, chosen.batch_size) == (["vir-2"], ["32-true", "bf16-mixed"], 7)
    with pytest.raises(SystemExit):
        options("--precision", "64-true")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--batch_size", "0"], "bench: batch_size = 0 is outside the allowed range [1, inf)."),
        (["--warmup", "-1"], "bench: warmup = -1 is outside the allowed range [0, inf)."),
        (["--repeats", "0"], "bench: repeats = 0 is outside the allowed range [1, inf)."),
        (
            ["--overrides", "model.init_args.label_smoothing"],
            "bench: overrides = 'model.init_args.label_smoothing' is not KEY=VALUE, e.g. "
            "model.init_args.label_smoothing=0.1",
        ),
    ],
)
def test_counts_and_overrides_are_refused_word_for_word_before_any_worker(argv, message):
    with pytest.raises(ConfigError) as error:
        bench.check_options(options(*argv))
    assert str(error.value) == message


def test_the_smallest_counts_are_accepted():
    bench.check_options(options("--batch_size", "1", "--warmup", "0", "--repeats", "1", "--overrides", "a.b=1"))


def test_a_spec_composes_the_pieces_it_names_after_the_ones_they_change(tmp_path):
    model = CONFIGS / "model"
    assert bench.model_pieces("vir", CONFIGS) == []
    assert bench.model_pieces("revit_fixed_alpha", CONFIGS) == [model / "vit_base.yaml", model / "revit.yaml",
                                                                 model / "revit_fixed_alpha.yaml"]  # fmt: skip
    assert bench.model_pieces("vit_small+revit", CONFIGS) == [model / "vit_small.yaml", model / "revit.yaml"]
    base = ["-c", str(CONFIGS / "vir.yaml"), "-c", str(CONFIGS / "data" / "mnist.yaml")]
    assert bench.config_args("vit_base-3", "mnist", CONFIGS, overrides=["--a.b=1", "c.d=2"]) == [
        *base, "-c", str(model / "vit_base.yaml"), "--model.backbone.init_args.depth", "3", "--a.b=1", "--c.d=2"
    ]  # fmt: skip
    piece = tmp_path / "slim-b0.50.yaml"
    piece.write_text("model: {}\n")
    recipe = str(CONFIGS / "recipe" / "strong.yaml")
    assert bench.config_args(str(piece), "mnist", CONFIGS, pieces=[recipe]) == [
        *base, "-c", str(piece), "-c", recipe
    ]  # fmt: skip
    with pytest.raises(ConfigError) as error:
        bench.config_args("nonesuch-2", "mnist", CONFIGS)
    families = ", ".join(sorted(path.stem for path in model.glob("*.yaml")))
    assert str(error.value) == (
        f"bench: no {model / 'nonesuch.yaml'} for model 'nonesuch-2'; the families in {model} are vir, {families} "
        "(run from the repository root, or give --configs_dir)"
    )


def test_the_timer_is_the_median_of_the_timed_runs_after_the_untimed_ones(monkeypatch):
    """A clock stepped by hand: each timed call lasts 5, 1, 4 ms (the warm-up calls are not timed at all)."""
    ticks = iter([10.0, 10.005, 20.0, 20.001, 30.0, 30.004])
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))  # bench's clock only
    calls = []
    median = bench.timer(torch.device("cpu"))(lambda: calls.append(1), 2, 3)
    assert median == pytest.approx(4.0) and len(calls) == 5


def test_the_resident_set_is_psutils_and_the_peak_sees_an_allocation_freed_inside_the_block():
    assert bench.resident_mib() == pytest.approx(psutil.Process().memory_info().rss / 2**20, abs=8)
    bench.set_mmap_threshold(bench.LIVE_TENSORS_THRESHOLD)  # freed tensors leave the resident set
    with bench.PeakResident() as resident:
        before = resident.peak
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, every page written
        del block
    assert 56 <= resident.peak - before <= 80


def test_a_cpu_steps_peak_is_the_highest_resident_set_above_the_baseline(monkeypatch):
    monkeypatch.setattr(bench, "resident_mib", lambda: 500.0)  # every reading, the sampler thread's too
    assert bench.peak_step_memory(lambda: None, torch.device("cpu"), baseline=120.0) == 380.0


def test_without_proc_the_resident_set_is_the_peak_so_far(monkeypatch):
    class NoProc:
        def __init__(self, path):
            self.path = path

        def exists(self) -> bool:
            return False

    monkeypatch.setattr(bench, "Path", NoProc)
    assert bench.resident_mib() == pytest.approx(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10, rel=0.01)


def measured(model: str, step: float, forward: float, memory: float, **extra) -> dict:
    return {"model": model, "precision": "32-true", "trainable_params": 1_234_567, "fixed_params": 2048,
            "forward_ms": forward, "train_step_ms": step, "images_per_s": 812.6, "peak_memory_mib": memory,
            **extra}  # fmt: skip


def test_the_table_shows_every_cell_as_measured_and_blank_ratios_without_a_vit_row():
    rows = [
        measured("vir-1", 12.34, 3.21, 50.4, recurrence_ms=3.24, matmul_floor_ms=1.06),
        measured("vit_base-1", 37.02, 6.0, 201.6),
        measured("vir-3", 20.0, 5.0, 60.0),
    ]
    rows[0] |= {"vs": "vit_base-1", "trainable_params_ratio": 0.25, "peak_memory_ratio": 0.5, "train_step_speedup": 3.0}
    shown = bench.table(rows, "mnist shapes, batch 4, cpu")
    assert shown.title == "mnist shapes, batch 4, cpu"
    headers = [column.header for column in shown.columns]
    assert headers == ["model", "precision", "trainable", "fixed", "fwd ms", "step ms", "img/s", "peak MiB",
                       "recur/floor ms", "vs ViT: params", "memory", "speed-up"]  # fmt: skip
    assert [column.justify for column in shown.columns] == ["left", "left"] + ["right"] * 10
    cells = [list(column._cells) for column in shown.columns]
    assert [cells[index][0] for index in range(12)] == ["vir-1", "32-true", "1,234,567", "2,048", "3.2", "12.3",
                                                         "813", "50", "3.2/1.1", "25.0%", "50.0%", "3.00×"]  # fmt: skip
    assert [cells[index][1] for index in range(8, 12)] == ["", "", "", ""]
    assert cells[7][1] == "202" and cells[0][2] == "vir-3"


def test_a_worker_processs_error_is_passed_on_with_its_exit_code(capsys):
    """The worker's own refusal (lit-vir's one-line message, exit code 2) reaches the user after the job's name; a
    worker that measures is run by the test below."""
    job = {"spec": "vir-1", "precision": "32-true", "batch_size": 2, "device": "cpu", "warmup": 0, "repeats": 1,
           "config_args": bench.config_args("vir-1", "mnist", CONFIGS, overrides=TINY_OVERRIDES)}  # fmt: skip
    broken = job | {"config_args": [*job["config_args"], "--model.backbone.init_args.spectral_radius=0"]}
    with pytest.raises(SystemExit) as exit_info:
        bench.run_worker(broken)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("lit-vir bench: measuring vir-1 failed:\n")
    assert (
        "lit-vir: invalid configuration: Reservoir: spectral_radius (α) = 0.0 is outside the allowed range (0, inf). "
        "Typical values lie in 0.5–1.5; the reference uses 0.9."
    ) in error.splitlines()


def test_a_run_writes_its_settings_environment_and_paired_rows(tmp_path, capsys, monkeypatch):
    """Two real workers (ViR-1 and ViT-Base-1 at batch 2): the JSON holds the options (not the config file's path),
    the environment and each row, the ViR row compared with the ViT one; the table and the file's name are printed."""
    monkeypatch.setenv("COLUMNS", "1000")
    output = tmp_path / "bench.json"
    settings = ["--data", "mnist", "--batch_size", "2", "--warmup", "0", "--repeats", "1", "--device", "cpu"]
    bench.main(["--models", "vir-1", "vit_base-1", *settings, "--configs_dir", str(CONFIGS), "--output", str(output)])
    written = json.loads(output.read_text())
    assert written["settings"]["models"] == ["vir-1", "vit_base-1"] and "config" not in written["settings"]
    assert written["environment"]["torch"] == torch.__version__
    vir, vit = written["rows"]
    assert (vir["model"], vir["batch_size"], vir["image_shape"]) == ("vir-1", 2, [1, 28, 28])
    assert vir["images_per_s"] == pytest.approx(2000 / vir["train_step_ms"]) and vir["optimizer"] == "Adam"
    assert vir["vs"] == "vit_base-1" and "vs" not in vit and "recurrence_ms" not in vit
    assert vir["train_step_speedup"] == pytest.approx(vit["train_step_ms"] / vir["train_step_ms"])
    from lit_vir.config import build_from_config

    model, _ = build_from_config(bench.config_args("vit_base-1", "mnist", CONFIGS))
    assert vit["trainable_params"] == count_parameters(model.backbone).trainable
    printed = capsys.readouterr().out
    assert "mnist shapes, batch 2, cpu" in printed and f"wrote {output}" in printed
