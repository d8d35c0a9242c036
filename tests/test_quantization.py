"""MPTQ-ViT post-training quantisation: SQ-b, OPT-m, the quantisers, the search, size, and `lit-vir quantize`."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from torch import nn

from lit_vir.cli import main as lit_vir_main
from lit_vir.commands.quantize import main as quantize_main
from lit_vir.models import ReViT, ViR, VisionTransformer
from lit_vir.quantization import (
    Recipe,
    TwinScaleQuantizer,
    calibrated_copy,
    coverage,
    greedy_search,
    model_size,
    observe,
    quantize_weight,
    quantized_copy,
    quantized_layers,
    set_precision,
    smoothed_copy,
    smoothing_pairs,
    twin_quantize,
)
from lit_vir.quantization.quantizers import fake_quantize, signed_levels
from tests.conftest import CONFIGS, QUICK_TRAINER, TINY_VIR
from tests.fakedata import write_mnist


def with_trained_looking_norms(model: nn.Module) -> nn.Module:
    """Give every LayerNorm the uneven, off-centre affine a trained model has (init is γ = 1, β = 0), so that
    SQ-b has real shifts and scales to fold."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.copy_(1 + torch.randn(module.weight.shape, generator=generator))
                module.bias.copy_(2 * torch.randn(module.bias.shape, generator=generator))
    return model


def tiny_vit() -> VisionTransformer:
    torch.manual_seed(0)
    model = VisionTransformer(
        num_classes=10, image_size=28, in_channels=1, patch_size=7, embed_dim=16, depth=2, num_heads=2
    )
    return with_trained_looking_norms(model).eval()


def tiny_vir() -> ViR:
    torch.manual_seed(0)
    model = ViR(
        num_classes=10, image_size=28, in_channels=1, patch_size=7, num_nodes=40, jump_size=7, embed_dim=16, mlp_dim=32
    )
    return with_trained_looking_norms(model).eval()


def images(count: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


BUILDERS = {"vit": tiny_vit, "vir": tiny_vir}


# ------------------------------------------------------------------------------------------------- SQ-b


@pytest.mark.parametrize("shift", ["midrange", "mean"])
@pytest.mark.parametrize("architecture", list(BUILDERS))
def test_sq_b_folding_leaves_the_float_logits_unchanged(architecture, shift):
    model = BUILDERS[architecture]()
    smoothed = smoothed_copy(model, images(), shift=shift)
    pairs, folded = smoothing_pairs(model), smoothing_pairs(smoothed)
    assert len(pairs) == (5 if architecture == "vit" else 2)  # per block 2 (ViT) or 1 (ViR), plus the head's
    assert not torch.equal(folded[0].norm.weight, pairs[0].norm.weight)  # something was folded
    test_images = images(seed=1)  # not the calibration images
    torch.testing.assert_close(smoothed(test_images), model(test_images), atol=1e-5, rtol=0)


@pytest.mark.parametrize("architecture", list(BUILDERS))
def test_sq_b_centres_every_layernorm_output_channel(architecture):
    model = BUILDERS[architecture]()
    calibration = images()
    smoothed = smoothed_copy(model, calibration)
    outputs = {}
    hooks = [
        pair.norm.register_forward_hook(lambda module, inputs, output, name=pair.name: outputs.update({name: output}))
        for pair in smoothing_pairs(smoothed)
    ]
    smoothed(calibration)
    for hook in hooks:
        hook.remove()
    for name, output in outputs.items():
        rows = output.reshape(-1, output.shape[-1])
        middle = (rows.amax(dim=0) + rows.amin(dim=0)) / 2
        assert middle.abs().max() < 1e-3 * rows.abs().max(), name  # each channel's range is symmetric about 0


@pytest.mark.parametrize("architecture", list(BUILDERS))
def test_sq_b_lowers_the_logit_error_of_4_bit_quantization(architecture):
    model = BUILDERS[architecture]()
    test_images = images(seed=1)
    reference = model(test_images)
    error = {}
    for sq_b in (True, False):
        quantized = calibrated_copy(model, images(), Recipe(sq_b=sq_b))
        set_precision(quantized, 4)
        error[sq_b] = float((quantized(test_images) - reference).abs().mean())
    assert error[True] < error[False]


# ------------------------------------------------------------------------------------------- quantisers


@pytest.mark.parametrize("bits", [8, 4, 3])
def test_per_channel_weight_error_is_at_most_half_a_step(bits):
    weight = torch.randn(6, 40, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 1, 6)[:, None]
    quantized = quantize_weight(weight, bits)
    steps = weight.abs().amax(dim=1, keepdim=True) / (2 ** (bits - 1) - 1)  # (6, 1) one step per channel
    assert ((quantized - weight).abs() <= steps / 2 + 1e-7 * steps).all()
    codes = quantized / steps
    torch.testing.assert_close(codes, codes.round(), atol=1e-4, rtol=0)  # on each channel's own grid
    assert codes.abs().max() <= 2 ** (bits - 1) - 1


def test_opt_m_with_m_zero_is_the_single_scale_quantizer():
    values = torch.linspace(-3, 3, 601)
    low, high = signed_levels(4)
    assert torch.equal(twin_quantize(values, 0.4, 0, 4), fake_quantize(values, 0.4, 0, low, high))


def test_opt_m_search_is_no_worse_than_a_single_scale_on_the_calibration_batch():
    generator = torch.Generator().manual_seed(0)
    hidden = nn.functional.gelu(3 * torch.randn(512, 32, generator=generator))  # (R, M) post-GELU rows
    consumer = torch.randn(8, 32, generator=generator)  # FC2's weight
    quantizer = TwinScaleQuantizer()
    quantizer.observing = True
    quantizer(hidden)
    quantizer.observing = False
    quantizer.set_bits(4, consumer)
    chosen = quantizer.fitted[4]

    def error(m: int) -> float:
        return float(((twin_quantize(hidden, chosen.scale, m, 4) - hidden) @ consumer.T).square().mean())

    assert error(chosen.m) <= min(error(m) for m in range(quantizer.max_m + 1))
    assert chosen.m >= 1 and error(chosen.m) < error(0)  # GELU's negative part needs the finer step
    torch.testing.assert_close(quantizer(hidden), twin_quantize(hidden, chosen.scale, chosen.m, 4))


# --------------------------------------------------------------------------------------- quantised models


@pytest.mark.parametrize("architecture", list(BUILDERS))
def test_quantized_copy_at_float_precision_is_the_model(architecture):
    model = BUILDERS[architecture]()
    quantized = quantized_copy(model)
    test_images = images(seed=1)
    torch.testing.assert_close(quantized(test_images), model(test_images), atol=1e-5, rtol=0)


@pytest.mark.parametrize("architecture", list(BUILDERS))
def test_eight_bits_change_the_logits_less_than_four_bits(architecture):
    model = BUILDERS[architecture]()
    quantized = calibrated_copy(model, images())
    test_images = images(seed=1)
    reference = model(test_images)
    deviation = {}
    for bits in (8, 4):
        set_precision(quantized, bits)
        deviation[bits] = float((quantized(test_images) - reference).abs().mean())
    assert 0 < deviation[8] < deviation[4]


def test_every_site_is_quantized_in_vit_and_the_trainable_parts_of_vir():
    vit = calibrated_copy(tiny_vit(), images())
    assert set(quantized_layers(vit)) == {
        *(f"blocks.{i}.{layer}" for i in range(2) for layer in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")),
        "head",
    }
    set_precision(vit, 4)
    assert all(vit.blocks[i].attn.softmax_quantizer.bits == 4 for i in range(2))
    assert all(isinstance(vit.blocks[i].mlp.fc2.input_quantizer, TwinScaleQuantizer) for i in range(2))
    vir = calibrated_copy(tiny_vir(), images())
    assert set(quantized_layers(vir)) == {
        "readouts.0.state_readout",
        "readouts.0.quadratic_readout",
        "blocks.0.mlp.0",
        "blocks.0.mlp.3",
        "head.linear",
    }  # the fixed patch embedding and the reservoirs stay float


def test_other_backbones_are_quantized_where_they_match():
    """ReViT computes its own softmax from `split_heads`: its Linears, SQ-b pairs and OPT-m are used, its
    softmax stays float rather than failing."""
    torch.manual_seed(0)
    model = with_trained_looking_norms(
        ReViT(num_classes=10, image_size=28, in_channels=1, patch_size=7, embed_dim=16, depth=2, num_heads=2)
    ).eval()
    quantized = calibrated_copy(model, images())
    covered = coverage(quantized)
    assert len(covered.linears) == 9 and len(covered.opt_m) == 2 and covered.softmax == []
    test_images = images(seed=1)
    torch.testing.assert_close(quantized(test_images), model(test_images), atol=1e-5, rtol=0)
    set_precision(quantized, 8)
    assert all(block.attn.softmax_quantizer.bits is None for block in quantized.blocks)
    assert 0 < float((quantized(test_images) - model(test_images)).abs().max()) < 0.1


# ------------------------------------------------------------------------------------------ search, size


def test_greedy_search_meets_each_requested_average_bit_width():
    quantized = calibrated_copy(tiny_vit(), images())
    choices = (8, 6, 5, 4, 3)
    search = greedy_search(quantized, images(), targets=[5.0, 4.0], choices=choices)
    weights = {name: layer.weight.numel() for name, layer in quantized_layers(quantized).items()}
    for target, bits in search.bits.items():
        assert set(bits) == set(weights) and set(bits.values()) <= set(choices)
        average = sum(weights[name] * bits[name] for name in weights) / sum(weights.values())
        assert average <= target
    assert all(search.bits[4.0][name] <= search.bits[5.0][name] for name in weights)  # one greedy path
    assert len(search.steps) > 0 and search.steps[-1].average_bits <= 4.0


def test_model_size_counts_a_known_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 5))
    quantized = quantized_copy(model)
    observe(quantized, torch.randn(20, 12))
    set_precision(quantized, 4)
    weights, scales, bias, input_scale = 12 * 5 * 4, 5 * 32, 5 * 32, 32
    assert model_size(quantized).bits == weights + scales + bias + input_scale
    assert model_size(model).bits == (12 * 5 + 5) * 32


def test_model_size_leaves_out_the_reservoirs():
    model = tiny_vir()
    assert model_size(model).bits == 32 * sum(parameter.numel() for parameter in model.parameters())


# ------------------------------------------------------------------------------------------ the command


def test_quantize_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        quantize_main(["--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    assert "examples:" in shown and "--ckpt_path" in shown and "--calibration" in shown


TINY_VIT = [
    *("-c", str(CONFIGS / "model" / "vit_base.yaml")),
    *("--model.backbone.init_args.embed_dim", "16", "--model.backbone.init_args.num_heads", "2"),
    *("--model.backbone.init_args.patch_size", "7"),
]
EXPECTED_ROWS = {("FP32", "float")} | {
    (precision, method)
    for precision in ("W8A8", "W6A6", "W4A4", "MP5", "MP4")
    for method in ("MPTQ-ViT", "SQ-b off", "OPT-m off")
}


@pytest.mark.parametrize(("model_args", "run"), [(TINY_VIR, "vir-mnist"), (TINY_VIT, "visiontransformer-mnist")])
def test_quantize_command_reports_every_setting_on_a_trained_checkpoint(tmp_path, monkeypatch, model_args, run):
    write_mnist(tmp_path / "data", train=200, test=40)
    monkeypatch.chdir(tmp_path)
    data = ["--data.init_args.download", "false"]
    lit_vir_main(["fit", "-c", str(CONFIGS / "vir.yaml"), *model_args, *QUICK_TRAINER, *data])
    checkpoint = tmp_path / "logs" / run / "version_0" / "checkpoints" / "last.ckpt"

    quantize_main(["--ckpt_path", str(checkpoint), "--calibration", "32", "--limit_batches", "1", "--output", "out"])

    report = json.loads((tmp_path / "out" / "quantization.json").read_text())
    rows = report["rows"]
    assert {(row["precision"], row["method"]) for row in rows} == EXPECTED_ROWS and len(rows) == len(EXPECTED_ROWS)
    assert report["calibration_images"] == 32 and report["test_images"] == 40  # one batch of the 40
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in rows)
    found = {(row["precision"], row["method"]): row for row in rows}
    for method in ("MPTQ-ViT", "SQ-b off", "OPT-m off"):
        sizes = [found[(precision, method)]["size_bits"] for precision in ("W4A4", "W6A6", "W8A8")]
        assert sizes == sorted(sizes) and sizes[-1] < found[("FP32", "float")]["size_bits"]
        for target in (5, 4):
            mixed = found[(f"MP{target}", method)]
            assert mixed["weight_bits"] <= target and mixed["activation_bits"] is None
            assert set(mixed["layer_bits"]) == set(report["coverage"]["linears"])
    assert found[("W8A8", "SQ-b off")]["sq_b"] is False and found[("W8A8", "OPT-m off")]["opt_m"] is False
    assert report["coverage"]["sq_b"] and report["coverage"]["opt_m"]
    with open(tmp_path / "out" / "quantization.csv") as stream:
        assert len(list(csv.DictReader(stream))) == len(EXPECTED_ROWS)
