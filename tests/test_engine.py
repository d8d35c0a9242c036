"""Every path of the reservoir engine computes what the plain step-by-step loop computes."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from lit_vir.checks import ConfigError
from lit_vir.models import ViR
from lit_vir.models.reservoir import Reservoir
from tests.conftest import CONFIGS, TINY_OVERRIDES
from tests.test_reservoir import reference_states

TINY = dict(
    num_classes=5,
    image_size=8,
    in_channels=1,
    patch_size=2,
    num_nodes=24,
    jump_size=5,
    embed_dim=6,
    mlp_dim=12,
    input_sparsity=0.3,
)


def bank(**options) -> Reservoir:
    return Reservoir(6, num_nodes=24, jump_size=5, input_sparsity=0.3, num_reservoirs=3, **options).double()


@pytest.mark.parametrize("leak_rate", [1.0, 0.4])
def test_in_place_and_graph_paths_match_the_plain_loop(leak_rate):
    reservoir = bank(leak_rate=leak_rate, bias_scaling=0.2)
    tokens = torch.randn(2, 7, 6, dtype=torch.float64)
    drive = reservoir.drive(tokens)
    with_graph = reservoir.recur_with_graph(drive)
    in_place = reservoir.overwrite_with_states(drive.clone())
    assert torch.equal(reservoir(tokens), in_place)  # forward without a graph takes the in-place path
    for index in range(3):
        expected = reference_states(
            tokens, reservoir.weight[index], reservoir.input_weight[index], leak_rate, reservoir.bias[index]
        )
        assert torch.allclose(in_place[index], expected, atol=1e-6, rtol=0)
        assert torch.allclose(with_graph[index], expected, atol=1e-6, rtol=0)


def test_no_graph_is_built_through_a_reservoir_whose_input_needs_no_gradient():
    reservoir = bank()
    states = reservoir(torch.randn(2, 5, 6, dtype=torch.float64))
    assert states.grad_fn is None and not states.requires_grad


def test_checkpointed_recurrence_gives_the_same_values_and_gradients():
    tokens = torch.randn(3, 6, 6, dtype=torch.float64, requires_grad=True)
    plain, checkpointed = bank(), bank(checkpoint_recurrence=True)
    values = [reservoir(tokens) for reservoir in (plain, checkpointed)]
    gradients = [torch.autograd.grad(value.sin().sum(), tokens)[0] for value in values]
    assert torch.allclose(values[0], values[1], atol=1e-12)
    assert torch.allclose(gradients[0], gradients[1], atol=1e-10)


def train_gradients(model: ViR, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    logits = model(images)
    logits.square().sum().backward()
    return logits.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("options", [dict(mode="serial", depth=3), dict(train_embedding=True, depth=2)])
def test_checkpointing_keeps_serial_and_trained_embedding_gradients(options):
    torch.manual_seed(0)
    plain = ViR(**TINY, **options).double()
    checkpointed = ViR(**TINY, **options, checkpoint_recurrence=True).double()
    checkpointed.load_state_dict(plain.state_dict())
    images = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    (logits, gradients), (logits_c, gradients_c) = train_gradients(plain, images), train_gradients(checkpointed, images)
    assert torch.allclose(logits, logits_c, atol=1e-12)
    assert gradients.keys() == gradients_c.keys()
    for name in gradients:
        assert torch.allclose(gradients[name], gradients_c[name], atol=1e-9), name


def test_state_cache_gives_identical_logits_and_gradients():
    torch.manual_seed(0)
    model = ViR(**TINY, depth=2).double()
    images = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    logits, gradients = train_gradients(model, images)
    cache = model.enable_state_cache(capacity=10, dtype=torch.float64)
    first = train_gradients(model, images)  # fills the cache
    assert cache.count == 4
    calls = []
    model.reservoirs[0].register_forward_hook(lambda *args: calls.append(1))
    second = train_gradients(model, images[[2, 0, 3, 1]])  # any order: keyed by content
    assert calls == []  # every state came from the cache
    assert torch.allclose(first[0], logits, atol=1e-12)
    assert torch.allclose(second[0], logits[[2, 0, 3, 1]], atol=1e-12)
    for name in gradients:
        assert torch.allclose(first[1][name], gradients[name], atol=1e-12)
        assert torch.allclose(second[1][name], gradients[name], atol=1e-9)


def test_state_cache_computes_misses_and_stores_only_while_training():
    model = ViR(**TINY).double().eval()
    cache = model.enable_state_cache(capacity=3, dtype=torch.float64)
    seen, new = torch.randn(2, 1, 8, 8, dtype=torch.float64), torch.randn(2, 1, 8, 8, dtype=torch.float64)
    reference = model(torch.cat([seen, new]))
    model(seen)
    assert cache.count == 0  # evaluation never fills the cache
    model.train()
    model(seen)
    assert cache.count == 2
    model(torch.cat([seen, new]))
    assert cache.count == 3 and cache.full  # capacity respected; the fourth image is computed, not stored
    assert torch.allclose(model.eval()(torch.cat([seen, new])), reference, atol=1e-12)


def test_state_cache_refuses_models_whose_states_change_while_training():
    with pytest.raises(ConfigError, match="mode = 'serial'"):
        ViR(**TINY, mode="serial", depth=2).enable_state_cache(8)
    with pytest.raises(ConfigError, match="train_embedding = True"):
        ViR(**TINY, train_embedding=True).enable_state_cache(8)


def test_bench_writes_every_field_for_vir_and_vit_from_its_config_pieces_and_overrides(tmp_path, monkeypatch):
    from lit_vir.cli import build_from_config, main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the workers: a test measures fields, not speed
    configs = tmp_path / "configs"
    (configs / "model").mkdir(parents=True)
    repo = __import__("tests.conftest", fromlist=["CONFIGS"]).CONFIGS
    (configs / "data").symlink_to(repo / "data")
    tiny = "        num_nodes: 32\n        jump_size: 5\n        embed_dim: 16\n        mlp_dim: 32\n"
    (configs / "vir.yaml").write_text(
        (repo / "vir.yaml")
        .read_text()
        .replace("        depth: 1\n", "        depth: 1\n" + tiny)  # vir.yaml leaves sizes to the defaults
    )
    assert tiny in (configs / "vir.yaml").read_text()
    (configs / "model" / "vit_base.yaml").write_text(
        (repo / "model" / "vit_base.yaml")
        .read_text()
        .replace("embed_dim: 768", "embed_dim: 24")
        .replace("num_heads: 12", "num_heads: 2")
    )
    settings = {"models": ["vir-1", "vit_base-1"], "data": "mnist", "batch_size": 4, "repeats": 2, "warmup": 1}
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(settings | {"precision": ["32-true"]}))
    strong = str(repo / "recipe" / "strong.yaml")
    depths = ["model.backbone.init_args.depth=3", "model.backbone.init_args.depth=2"]  # the last one wins
    main(["bench", "-c", "bench.yaml", "--pieces", strong, "--overrides", *depths, "--output", "bench.json"])
    result = json.loads((tmp_path / "bench.json").read_text())
    rows = {(row["model"], row["precision"]): row for row in result["rows"]}
    assert len(rows) == 2  # one worker process each; bf16 and the pairing by precision are tested below
    vir, vit = rows["vir-1", "32-true"], rows["vit_base-1", "32-true"]
    depth_2_on_mnist = [
        "-c",
        str(configs / "vir.yaml"),
        "-c",
        str(configs / "data" / "mnist.yaml"),
        "-c",
        strong,
        "--model.backbone.init_args.depth",
        "2",
    ]
    for row, pieces in ((vir, []), (vit, ["-c", str(configs / "model" / "vit_base.yaml")])):
        model, _ = build_from_config([*depth_2_on_mnist, *pieces])
        parameters = list(model.backbone.parameters())  # the paper counts ViR's frozen patch embedding as trainable
        assert row["trainable_params"] == sum(p.numel() for p in parameters)
        assert row["frozen_params"] == sum(p.numel() for p in parameters if not p.requires_grad)
        assert row["image_shape"] == [1, 28, 28] and row["batch_size"] == 4
        assert (row["optimizer"], row["learning_rate"]) == ("AdamW", 1e-3)  # the piece's, not the default Adam
    # wall times have no reference value: measured (> 0), and what they define; the CPU's peak resident memory
    # above the baseline neither, and may even be ≤ 0 (the resident set moves by pages): only that it is a number
    for row in rows.values():
        assert row["forward_ms"] > 0 and row["train_step_ms"] > 0 and math.isfinite(row["peak_memory_mib"])
        assert row["images_per_s"] == pytest.approx(1000 * 4 / row["train_step_ms"])
    memory_ratio = vir["peak_memory_mib"] / vit["peak_memory_mib"] if vit["peak_memory_mib"] > 0 else None
    assert vir["peak_memory_ratio"] == pytest.approx(memory_ratio)
    assert vir["fixed_params"] == 2 * (32 * 32 + 16 * 32) and vit["fixed_params"] == 0
    assert vir["frozen_params"] == 4 * 4 * 1 * 16 + 16 and vit["frozen_params"] == 0  # ViR's fixed patch embedding
    assert vir["recurrence_ms"] > 0 and vir["matmul_floor_ms"] > 0
    assert vir["vs"] == "vit_base-1"
    assert vir["trainable_params_ratio"] == pytest.approx(vir["trainable_params"] / vit["trainable_params"])
    assert vir["train_step_speedup"] == pytest.approx(vit["train_step_ms"] / vir["train_step_ms"])
    assert vir["forward_speedup"] == pytest.approx(vit["forward_ms"] / vir["forward_ms"])
    assert result["environment"]["torch"] == torch.__version__


def test_bench_worker_measures_a_bf16_row_as_fit_would_build_it(monkeypatch):
    """The worker's own function, in process (the CLI test above runs it in worker processes): under
    bf16 autocast the recurrence is timed too, in the reservoir's float32 precision as in the forward."""
    from lit_vir.commands import bench

    monkeypatch.setattr(bench, "set_mmap_threshold", lambda size: None)  # this process's malloc stays as it is
    job = {
        "spec": "vir-2",
        "precision": "bf16-mixed",
        "config_args": bench.config_args("vir-2", "mnist", CONFIGS, overrides=TINY_OVERRIDES),
        "batch_size": 3,
        "device": "cpu",
        "warmup": 0,
        "repeats": 1,
    }
    row = bench.measure_model(job)
    assert (row["model"], row["precision"], row["batch_size"], row["image_shape"]) == (
        "vir-2",
        "bf16-mixed",
        3,
        [1, 28, 28],
    )
    assert row["fixed_params"] == 2 * (32 * 32 + 16 * 32)  # W and V of two cores at N 32, D 16
    assert row["recurrence_over_floor"] == pytest.approx(row["recurrence_ms"] / row["matmul_floor_ms"])
    assert row["images_per_s"] == pytest.approx(1000 * 3 / row["train_step_ms"])


def test_bench_compares_each_row_with_the_vit_base_row_of_its_depth_and_precision():
    from lit_vir.commands.bench import add_ratios

    def row(model: str, precision: str, step: float, forward: float, params: int, memory: float) -> dict:
        return {"model": model, "precision": precision, "train_step_ms": step, "forward_ms": forward,
                "trainable_params": params, "peak_memory_mib": memory}  # fmt: skip

    rows = [
        row("vir-2", "32-true", 10.0, 4.0, 100, 50.0),
        row("vir-2", "bf16-mixed", 8.0, 2.0, 100, 40.0),
        row("vit_base-2", "32-true", 30.0, 6.0, 400, 200.0),
        row("vit_base-2", "bf16-mixed", 12.0, 5.0, 400, 0.0),
        row("vir-3", "32-true", 15.0, 6.0, 150, 60.0),  # no ViT-Base-3: no ratios
    ]
    add_ratios(rows)
    vir32, vir16, vit32, vit16, vir3 = rows
    assert (vir32["vs"], vir16["vs"]) == ("vit_base-2", "vit_base-2")
    assert (vir32["train_step_speedup"], vir32["forward_speedup"]) == (3.0, 1.5)
    assert (vir16["train_step_speedup"], vir16["forward_speedup"]) == (1.5, 2.5)  # the bf16 ViT, not the fp32 one
    assert (vir32["trainable_params_ratio"], vir32["peak_memory_ratio"]) == (0.25, 0.25)
    assert vir16["peak_memory_ratio"] is None  # a baseline that measured no memory gives no ratio
    assert "vs" not in vit32 and "vs" not in vit16 and "vs" not in vir3


def fit_digits(folder, monkeypatch, *extra: str) -> dict[str, torch.Tensor]:
    from lit_vir.cli import main
    from lit_vir.training.checkpoints import read_checkpoint

    folder.mkdir()
    monkeypatch.chdir(folder)
    main(
        [
            "fit",
            "-c",
            str(CONFIGS / "quickstart.yaml"),
            "--test_after_fit",
            "false",
            "--trainer.max_epochs",
            "2",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.deterministic",
            "true",
            *extra,
        ]
    )
    return read_checkpoint(folder / "logs" / "vir-digits" / "version_0" / "checkpoints" / "last.ckpt")["state_dict"]


def test_training_with_the_state_cache_ends_with_the_same_weights(tmp_path, monkeypatch):
    plain = fit_digits(tmp_path / "plain", monkeypatch)
    cached = fit_digits(
        tmp_path / "cached",
        monkeypatch,
        "--trainer.callbacks+=lit_vir.training.callbacks.state_cache.CacheReservoirStates",
    )
    # States computed in another batch composition differ in the last float32 bit (blocked matmuls),
    # so two epochs agree to rounding, not bit for bit; the float64 test above shows the exactness.
    for name in plain:
        assert torch.allclose(plain[name], cached[name], atol=1e-5, rtol=1e-4), name


def test_state_cache_that_cannot_fit_is_refused_before_training(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fit_digits(
            tmp_path / "run",
            monkeypatch,
            "--trainer.callbacks+=lit_vir.training.callbacks.state_cache.CacheReservoirStates",
            "--trainer.callbacks.init_args.memory_fraction",
            "1e-12",
        )
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "CacheReservoirStates: caching" in error and "GiB" in error and "memory_fraction" in error


def test_state_cache_refuses_augmented_training_data(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        fit_digits(
            tmp_path / "run",
            monkeypatch,
            "--data.init_args.augment",
            "true",
            "--trainer.callbacks+=lit_vir.training.callbacks.state_cache.CacheReservoirStates",
        )
    assert "set data.init_args.augment: false" in capsys.readouterr().err
