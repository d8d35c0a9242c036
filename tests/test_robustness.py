"""Robustness: corruption metrics, the corruption report of `lit-vir test`, and `lit-vir perturb`."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from lit_vir.checks import ConfigError
from lit_vir.cli import build_from_config, main
from lit_vir.data.corruptions import BENCHMARK_CORRUPTIONS
from lit_vir.models import ViR, VisionTransformer
from lit_vir.models.reservoir import Reservoir
from lit_vir.models.topology import spectral_radius
from lit_vir.robustness.metrics import load_summary, summarize
from lit_vir.robustness.perturb import Perturbation, accuracy, correct_images, perturbed, unperturbed_level
from lit_vir.robustness.report import corruption_table, write_corruption_files
from lit_vir.training.checkpoints import load_classifier
from tests.conftest import CONFIGS, QUICK_TRAINER, TINY_VIR
from tests.fakedata import write_mnist


def test_mean_corruption_accuracy_counts_benchmark_corruptions_only():
    cells = {("clean", 0): 0.9, ("fog", 1): 0.8, ("fog", 2): 0.6, ("contrast", 1): 0.5, ("speckle_noise", 1): 0.1}
    summary = summarize(cells)
    assert summary.clean_accuracy == 0.9
    assert summary.per_corruption == {"fog": pytest.approx(0.7), "contrast": 0.5, "speckle_noise": 0.1}
    assert summary.benchmark_corruptions == ["fog", "contrast"]  # in the published order (weather, digital)
    assert summary.mean_corruption_accuracy == pytest.approx(0.6)
    assert summary.mce_unnormalised == pytest.approx(40.0)


def test_corruption_errors_relative_to_a_reference_model(tmp_path):
    reference = summarize({("clean", 0): 0.8, ("fog", 1): 0.6, ("fog", 2): 0.4, ("contrast", 1): 0.5})
    reference.to_json(tmp_path / "reference.json")
    ours = summarize(
        {("clean", 0): 0.9, ("fog", 1): 0.8, ("fog", 2): 0.6, ("contrast", 1): 0.75},
        load_summary(tmp_path / "reference.json"),
        reference_name="vit",
    )
    # CE_fog = (0.2 + 0.4) / (0.4 + 0.6); CE_contrast = 0.25 / 0.5
    assert ours.corruption_errors == {"fog": pytest.approx(60.0), "contrast": pytest.approx(50.0)}
    assert ours.mce == pytest.approx(55.0)
    # rCE_fog = ((0.2 − 0.1) + (0.4 − 0.1)) / ((0.4 − 0.2) + (0.6 − 0.2)); rCE_contrast = 0.15 / 0.3
    assert ours.relative_corruption_errors == {"fog": pytest.approx(200 / 3), "contrast": pytest.approx(50.0)}
    assert ours.relative_mce == pytest.approx((200 / 3 + 50) / 2)


def table_cells(table) -> tuple[list[str], list[list[str]], str]:
    """A Rich table's column headers, its rows of cells as shown, and its caption."""
    columns = [str(column.header) for column in table.columns]
    rows = [[str(column._cells[index]) for column in table.columns] for index in range(table.row_count)]
    return columns, rows, table.caption


def test_the_corruption_table_shows_each_cell_mean_ce_and_rce():
    """The numbers of test_corruption_errors_relative_to_a_reference_model, as the table shows them: percentages
    of two decimals, CE and rCE of one, benchmark corruptions first, an extra one last and marked."""
    reference = summarize({("clean", 0): 0.8, ("fog", 1): 0.6, ("fog", 2): 0.4, ("contrast", 1): 0.5})
    cells = {("clean", 0): 0.9, ("speckle_noise", 2): 0.3, ("fog", 1): 0.8, ("fog", 2): 0.6, ("contrast", 1): 0.75}
    ours = summarize(cells, reference, reference_name="vit")
    columns, rows, caption = table_cells(corruption_table(ours, title="T"))
    assert columns == ["corruption", "s1", "s2", "mean", "CE %", "rCE %"]
    assert rows == [
        ["fog", "80.00", "60.00", "70.00", "60.0", "66.7"],
        ["contrast", "75.00", "", "75.00", "50.0", "50.0"],
        ["speckle_noise (extra)", "", "30.00", "30.00", "", ""],
    ]
    assert caption == (
        "clean 90.00%; mean corruption accuracy 72.50% over 2 benchmark corruptions (CIFAR mCE 27.50); "
        "mCE 55.0% vs vit; relative mCE 58.3%"
    )
    columns, rows, caption = table_cells(corruption_table(summarize({("fog", 3): 0.25})))
    assert columns == ["corruption", "s3", "mean"] and rows == [["fog", "25.00", "25.00"]]
    assert caption == "mean corruption accuracy 25.00% over 1 benchmark corruptions (CIFAR mCE 75.00)"


def test_the_corruption_files_hold_every_cell_and_the_summary(tmp_path):
    summary = summarize({("clean", 0): 0.9, ("fog", 2): 0.6, ("fog", 1): 0.8})
    written = write_corruption_files(summary, tmp_path / "out")
    assert [path.name for path in written] == [
        "corruption_accuracy.csv",
        "corruption_summary.json",
        "corruption_heatmap.png",
    ]
    with open(written[0]) as stream:
        assert list(csv.DictReader(stream)) == [
            # no per-image outcomes in this summary, so no interval
            {"corruption": "fog", "severity": "1", "accuracy": "0.8", "error": str(1 - 0.8)}
            | {"accuracy_low": "", "accuracy_high": ""},
            {"corruption": "fog", "severity": "2", "accuracy": "0.6", "error": str(1 - 0.6)}
            | {"accuracy_low": "", "accuracy_high": ""},
        ]
    assert load_summary(written[1]) == summary
    assert written[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def trained_vir(tmp_path, monkeypatch) -> Path:
    write_mnist(tmp_path / "data", train=200, test=40)
    monkeypatch.chdir(tmp_path)
    main(["fit", "-c", str(CONFIGS / "vir.yaml"), *TINY_VIR, *QUICK_TRAINER, "--data.init_args.download", "false"])
    return tmp_path / "logs" / "vir-mnist" / "version_0" / "checkpoints" / "last.ckpt"


def test_lit_vir_test_on_generated_corruptions_writes_every_cell(tmp_path, trained_vir):
    severities = [1, 5]
    corrupted = [
        "-c",
        str(CONFIGS / "vir.yaml"),
        "-c",
        str(CONFIGS / "data" / "corrupted_mnist.yaml"),
        *TINY_VIR,
        "--data.init_args.dataset.init_args.download",
        "false",
        "--data.init_args.severities",
        str(severities),
    ]
    main(["test", *corrupted, "--trainer.enable_progress_bar", "false", "--ckpt_path", str(trained_vir)])
    run = tmp_path / "logs" / "vir-corrupted" / "version_0"
    with open(run / "corruption_accuracy.csv") as stream:
        rows = list(csv.DictReader(stream))
    expected = {(name, str(severity)) for name in BENCHMARK_CORRUPTIONS for severity in severities}
    assert {(row["corruption"], row["severity"]) for row in rows} == expected
    # every cell against a plain loop over the same cells with the checkpoint's backbone
    _, data = build_from_config(corrupted)
    data.prepare_data()
    data.setup("test")
    backbone = load_classifier(trained_vir).backbone
    reference = {
        cell: accuracy(backbone, loader) for cell, loader in zip(data.cells, data.test_dataloader(), strict=True)
    }
    written = {(row["corruption"], int(row["severity"])): float(row["accuracy"]) for row in rows}
    assert written == pytest.approx({cell: value for cell, value in reference.items() if cell[0] != "clean"})
    summary = json.loads((run / "corruption_summary.json").read_text())
    assert (
        summary["clean_accuracy"] == pytest.approx(reference["clean", 0])
        and len(summary["benchmark_corruptions"]) == 15
    )
    per_corruption = [sum(written[name, severity] for severity in severities) / 2 for name in BENCHMARK_CORRUPTIONS]
    assert summary["mean_corruption_accuracy"] == pytest.approx(sum(per_corruption) / 15)
    assert (run / "corruption_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = EventAccumulator(str(run))
    events.Reload()
    assert "robustness/mean_corruption_acc" in events.Tags()["scalars"]
    assert "robustness/acc/fog/s5" in events.Tags()["scalars"]
    assert "robustness/heatmap" in events.Tags()["images"]


def counted_accuracy(model: torch.nn.Module, datamodule) -> float:
    """Top-1 accuracy over the test split, counted here."""
    correct = seen = 0
    with torch.no_grad():
        for images, labels in datamodule.test_dataloader():
            correct += int((model(images).argmax(dim=1) == labels).sum())
            seen += len(labels)
    return correct / seen


def tiny_vir(**options) -> ViR:
    return ViR(
        num_classes=10,
        image_size=28,
        in_channels=1,
        patch_size=7,
        num_nodes=40,
        jump_size=7,
        embed_dim=16,
        mlp_dim=32,
        **options,
    ).eval()


@pytest.mark.parametrize("kind", ["noise", "spectral_radius", "input_sparsity", "reservoir_seed"])
@pytest.mark.parametrize("mode", ["parallel", "serial"])
def test_zero_perturbation_leaves_the_model_exactly_as_trained(kind, mode):
    model = tiny_vir(depth=2, mode=mode)
    images = torch.randn(6, 1, 28, 28)
    unchanged = perturbed(model, Perturbation(kind, unperturbed_level(model, kind)))
    assert torch.equal(unchanged(images), model(images))


def test_zero_noise_leaves_a_vit_exactly_as_trained():
    model = VisionTransformer(
        num_classes=10, image_size=28, in_channels=1, patch_size=7, embed_dim=16, depth=2, num_heads=2
    ).eval()
    images = torch.randn(4, 1, 28, 28)
    assert torch.equal(perturbed(model, Perturbation("noise", 0.0))(images), model(images))
    noisy = perturbed(model, Perturbation("noise", 0.1))
    assert not torch.equal(noisy.blocks[0].attn.qkv.weight, model.blocks[0].attn.qkv.weight)
    assert torch.equal(noisy.patch_embed.weight, model.patch_embed.weight)  # only attention/MLP weights


def test_spectral_radius_factor_rescales_alpha():
    model = tiny_vir()
    scaled = perturbed(model, Perturbation("spectral_radius", 1.2))
    assert spectral_radius(scaled.reservoirs[0].weight[0]) == pytest.approx(1.2 * 0.9, abs=1e-5)
    assert torch.equal(model.reservoirs[0].weight[0], tiny_vir().reservoirs[0].weight[0])  # original untouched


def with_relative_noise(model: ViR, scale: float, seed: int) -> ViR:
    """M ← M ⊙ (1 + ε·Z) by hand: Z ~ N(0, 1) in float64 from `seed`, W then V of each bank in module order."""
    noisy, generator = copy.deepcopy(model), torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bank in (module for module in noisy.modules() if isinstance(module, Reservoir)):
            for matrix in (bank.weight, bank.input_weight):
                draw = torch.randn(matrix.shape, generator=generator, dtype=torch.float64)
                matrix.copy_(matrix.double() * (1 + scale * draw))
    return noisy


@pytest.mark.parametrize("mode", ["parallel", "serial"])
def test_relative_noise_multiplies_w_and_v_by_one_plus_epsilon_z_and_keeps_the_zeros(mode):
    model = tiny_vir(input_sparsity=0.2, depth=2, mode=mode)
    noisy, expected = perturbed(model, Perturbation("noise", 0.05), seed=3), with_relative_noise(model, 0.05, 3)
    for bank, by_hand, before in zip(noisy.reservoirs, expected.reservoirs, model.reservoirs, strict=True):
        for name in ("weight", "input_weight"):
            after = getattr(bank, name)
            torch.testing.assert_close(after, getattr(by_hand, name), rtol=1e-6, atol=0)
            assert torch.equal(getattr(before, name) == 0, after == 0)
    assert not torch.equal(
        perturbed(model, Perturbation("noise", 0.05)).reservoirs[0].weight, noisy.reservoirs[0].weight
    )


@pytest.mark.parametrize("mode", ["parallel", "serial"])
def test_every_bank_member_redrawn_at_a_new_density_equals_one_built_at_that_density(mode):
    """Bank member i (a parallel core, or a serial layer) takes its V from its own seed + i: checked against models
    built at that density, so a member that took another member's seed fails."""
    redrawn = perturbed(tiny_vir(depth=3, mode=mode, input_sparsity=0.1), Perturbation("input_sparsity", 0.3))
    built = tiny_vir(depth=3, mode=mode, input_sparsity=0.3)
    assert sum(bank.num_reservoirs for bank in redrawn.reservoirs) == 3
    for after, expected in zip(redrawn.reservoirs, built.reservoirs, strict=True):
        assert torch.equal(after.input_weight, expected.input_weight)


@pytest.mark.parametrize("mode", ["parallel", "serial"])
def test_every_bank_member_redrawn_with_a_new_seed_equals_one_built_with_that_seed(mode):
    redrawn = perturbed(tiny_vir(depth=3, mode=mode, seed=42), Perturbation("reservoir_seed", 7))
    built = tiny_vir(depth=3, mode=mode, seed=7)
    for after, expected in zip(redrawn.reservoirs, built.reservoirs, strict=True):
        assert torch.equal(after.weight, expected.weight)
    members = torch.cat([bank.weight for bank in redrawn.reservoirs])  # (3, N, N), whether 1 bank of 3 or 3 of 1
    assert not torch.equal(members[0], members[-1])  # each member has its own seed


class FirstPixels(nn.Module):
    """Logits = the first three pixels of each image: a model whose every prediction is known by hand. It notes
    whether autograd was recording when it ran."""

    recorded: list[bool]

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) → (B, 3)
        self.recorded = [*getattr(self, "recorded", []), torch.is_grad_enabled()]
        return images.flatten(1)[:, :3]


def test_correct_images_marks_each_image_right_or_wrong_in_batch_order():
    first = torch.zeros(3, 1, 2, 2)
    first.view(3, -1)[0, 2] = first.view(3, -1)[1, 0] = first.view(3, -1)[2, 1] = 1.0  # predicts 2, 0, 1
    second = torch.zeros(2, 1, 2, 2)
    second.view(2, -1)[0, 1] = second.view(2, -1)[1, 2] = 1.0  # predicts 1, 2
    batches = [(first, torch.tensor([2, 1, 1])), (second, torch.tensor([0, 2]))]
    model = FirstPixels()
    outcomes = correct_images(model, batches)  # the default device: the CPU
    assert outcomes.tolist() == [1, 0, 1, 0, 1]
    assert model.recorded == [False, False]  # scored without an autograd graph
    assert outcomes.dtype == np.int8  # one byte an image: what the prediction files store
    assert accuracy(FirstPixels(), batches) == pytest.approx(3 / 5)


def test_correct_images_of_no_batches_is_empty():
    outcomes = correct_images(FirstPixels(), [])
    assert outcomes.shape == (0,) and outcomes.dtype == np.int8
    assert accuracy(FirstPixels(), []) == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_correct_images_moves_the_model_and_each_batch_to_the_device():
    """A CPU model and CPU batches scored on a GPU: both must move there (kills the `.to(None)` survivors)."""
    first = torch.zeros(2, 1, 2, 2)
    first.view(2, -1)[0, 1] = first.view(2, -1)[1, 2] = 1.0  # predicts 1, 2
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(3, 4))  # logits = the first three pixels
    assert correct_images(model, [(first, torch.tensor([1, 0]))], device="cuda").tolist() == [1, 0]


def test_an_unknown_perturbation_kind_is_refused_with_the_kinds_allowed():
    with pytest.raises(ConfigError, match=r"^perturbation: kind = 'temperature' is not one of 'noise', "):
        unperturbed_level(tiny_vir(), "temperature")
    with pytest.raises(ConfigError, match=r"^perturbation: kind = 'temperature' is not one of 'noise', "):
        perturbed(tiny_vir(), Perturbation("temperature", 1.0))


def test_redrawn_input_matrix_has_the_new_density_and_keeps_w():
    model = tiny_vir(input_sparsity=0.1)
    redrawn = perturbed(model, Perturbation("input_sparsity", 0.3))
    assert int(torch.count_nonzero(redrawn.reservoirs[0].input_weight)) == round(0.3 * 16 * 40)
    assert torch.equal(redrawn.reservoirs[0].weight, model.reservoirs[0].weight)
    denser_everywhere = (model.reservoirs[0].input_weight != 0) <= (redrawn.reservoirs[0].input_weight != 0)
    assert denser_everywhere.all()  # the same permutation of positions: a superset of non-zeros


def test_redrawn_reservoir_equals_one_built_with_that_seed():
    redrawn = perturbed(tiny_vir(seed=42), Perturbation("reservoir_seed", 7))
    assert torch.equal(redrawn.reservoirs[0].weight, tiny_vir(seed=7).reservoirs[0].weight)


def test_perturb_command_compares_checkpoints_and_reproduces_the_unperturbed_accuracy(tmp_path, trained_vir):
    output = tmp_path / "perturbation"
    main(
        [
            "perturb",
            "--ckpt_path",
            str(trained_vir),
            "--spectral_radius",
            "0.8",
            "1.0",
            "--noise",
            "0",
            "0.1",
            "--input_sparsity",
            "0.1",
            "--reservoir_seed",
            "3",
            "--output",
            str(output),
        ]
    )
    rows = json.loads((output / "perturbation.json").read_text())
    assert {(row["kind"], row["level"]) for row in rows} == {
        ("spectral_radius", 0.8),
        ("spectral_radius", 1.0),
        ("noise", 0.0),
        ("noise", 0.1),
        ("input_sparsity", 0.1),
        ("reservoir_seed", 42.0),
        ("reservoir_seed", 3.0),
    }
    # every row against the model built by hand (or by the config, at the perturbed hyperparameter), counted here
    config = ["-c", str(CONFIGS / "vir.yaml"), *TINY_VIR, "--data.init_args.download", "false"]
    _, data = build_from_config(config)
    data.prepare_data()
    data.setup("test")
    trained = load_classifier(trained_vir).backbone.eval()
    scaled = copy.deepcopy(trained)
    with torch.no_grad():
        scaled.reservoirs[0].weight.mul_(0.8)

    def rebuilt(option: str, value: str, redrawn: str) -> torch.nn.Module:
        """The config's ViR built at `option` = `value`, holding the trained weights but its own `redrawn`."""
        model, _ = build_from_config([*config, f"--model.backbone.init_args.{option}", value])
        kept = {key: tensor for key, tensor in trained.state_dict().items() if key != f"reservoirs.0.{redrawn}"}
        assert len(kept) == len(trained.state_dict()) - 1
        model.backbone.load_state_dict(kept, strict=False)
        return model.backbone.eval()

    expected = {
        ("spectral_radius", 0.8): scaled,
        ("noise", 0.1): with_relative_noise(trained, 0.1, seed=0),  # perturb's default --seed
        ("input_sparsity", 0.1): rebuilt("input_sparsity", "0.1", "input_weight"),
        ("reservoir_seed", 3.0): rebuilt("seed", "3", "weight"),
    } | dict.fromkeys([("spectral_radius", 1.0), ("noise", 0.0), ("reservoir_seed", 42.0)], trained)
    for row in rows:
        assert row["accuracy"] == counted_accuracy(expected[row["kind"], row["level"]], data), row
    assert (output / "perturbation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(output / "perturbation.csv") as stream:
        assert [(row["kind"], float(row["level"]), float(row["accuracy"])) for row in csv.DictReader(stream)] == [
            (row["kind"], row["level"], row["accuracy"]) for row in rows
        ]


def test_reference_corruptions_it_lacks_or_cannot_divide_by_are_left_out():
    """CE and rCE by hand where the reference misses a corruption (the first benchmark one: the others still count),
    makes no error on one (no CE: 0 in the denominator) or loses nothing to it (no rCE), and where our run has no
    clean cell (no rCE at all)."""
    reference = summarize({("clean", 0): 0.8, ("fog", 1): 1.0, ("contrast", 1): 0.8, ("pixelate", 1): 0.6})
    ours = {("gaussian_noise", 1): 0.5, ("fog", 1): 0.9, ("contrast", 1): 0.7, ("pixelate", 1): 0.7}
    found = summarize({("clean", 0): 0.9, **ours}, reference, reference_name="ref")
    assert found.corruption_errors == {"contrast": pytest.approx(150.0), "pixelate": pytest.approx(75.0)}
    # rCE_pixelate = (0.3 − 0.1) / (0.4 − 0.2); contrast: the reference loses nothing (0.2 − 0.2), fog: 0 − 0.2 < 0
    assert found.relative_corruption_errors == {"fog": pytest.approx(0.0), "pixelate": pytest.approx(100.0)}
    assert found.mce == pytest.approx(112.5) and found.reference == "ref"
    without_clean = summarize(ours, reference)
    assert without_clean.relative_corruption_errors == {} and without_clean.relative_mce is None
    assert without_clean.corruption_errors == found.corruption_errors


def test_only_extra_corruptions_give_no_mean():
    summary = summarize({("clean", 0): 0.9, ("speckle_noise", 1): 0.5})
    assert summary.benchmark_corruptions == [] and summary.mean_corruption_accuracy is None
    assert summary.mce_unnormalised is None and summary.per_corruption == {"speckle_noise": 0.5}


def test_the_intervals_enter_the_summary_its_rows_and_its_json(tmp_path):
    """with_intervals on a real CellIntervals: every cell's bounds by severity, clean apart, each corruption's bounds
    (clean not among them), the mean's, what they resample and the test size; the CSV rows and the JSON file (indented
    by 2, read back with integer severities) carry them."""
    import numpy as np

    from lit_vir.robustness.intervals import corruption_intervals
    from lit_vir.robustness.metrics import with_intervals

    cells = [("clean", 0), ("fog", 1), ("fog", 2), ("speckle_noise", 1)]
    generator = np.random.default_rng(7)
    matrix = (generator.random((4, 300)) < np.array([[0.9], [0.7], [0.5], [0.4]])).astype(np.int8)
    intervals = corruption_intervals(cells, [matrix], resamples=500)
    accuracy = {cell: float(row.mean()) for cell, row in zip(cells, matrix, strict=True)}
    summary = with_intervals(summarize(accuracy), intervals, test_images=300)
    bounds = {
        cell: [float(low), float(high)] for cell, low, high in zip(cells, intervals.low, intervals.high, strict=True)
    }
    assert summary.cell_intervals == {
        "fog": {1: bounds["fog", 1], 2: bounds["fog", 2]},
        "speckle_noise": {1: bounds["speckle_noise", 1]},
    }
    assert summary.clean_interval == bounds["clean", 0]
    fog = intervals.per_corruption["fog"]
    assert summary.per_corruption_intervals == {
        "fog": [fog.low, fog.high],
        "speckle_noise": [
            intervals.per_corruption["speckle_noise"].low,
            intervals.per_corruption["speckle_noise"].high,
        ],
    }
    assert summary.mean_corruption_interval == [intervals.mean.low, intervals.mean.high]
    assert summary.interval_over == "images" and summary.test_images == 300
    rows = {(row["corruption"], row["severity"]): row for row in summary.rows()}
    assert [rows["fog", 2]["accuracy_low"], rows["fog", 2]["accuracy_high"]] == bounds["fog", 2]
    assert rows["speckle_noise", 1]["accuracy_low"] == bounds["speckle_noise", 1][0]
    summary.to_json(tmp_path / "summary.json")
    text = (tmp_path / "summary.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2) and text.startswith('{\n  "cells": {')
    assert load_summary(tmp_path / "summary.json") == summary
    no_mean = with_intervals(summarize({("speckle_noise", 1): 0.4}), corruption_intervals(cells[3:], [matrix[3:]]), 300)
    assert no_mean.mean_corruption_interval is None and no_mean.clean_interval is None
    legacy = json.loads(text)
    del legacy["cell_intervals"]  # a summary written before the intervals existed
    (tmp_path / "legacy.json").write_text(json.dumps(legacy))
    assert load_summary(tmp_path / "legacy.json").cell_intervals == {}
