"""MobileViT and ExMobileViT: small-image strides, patch unfolding, the papers' parameter counts, the CLI."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
import yaml

from lit_vir.checks import ConfigError
from lit_vir.cli import main
from lit_vir.models import MobileViT, count_parameters, mobilevit_s, mobilevit_xs, mobilevit_xxs
from lit_vir.models.mobilevit import (
    EXMOBILEVIT_BACKBONE,
    EXTENSION_WIDTHS,
    InvertedResidual,
    MobileViTBlock,
    exmobilevit_s,
)
from tests.conftest import CONFIGS
from tests.fakedata import write_cifar10, write_mnist
from tests.norms import randomize_norms

# A MobileViT small enough for CPU tests: every width 8, one transformer layer per block.
TINY = dict(
    channels=(8, 8, 8, 8, 8, 8),
    transformer_dims=(8, 8, 8),
    transformer_depths=(1, 1, 1),
    final_dim=16,
    expand_ratio=2,
    num_heads=2,
)


@pytest.mark.parametrize(("image_size", "in_channels"), [(28, 1), (32, 3)])
def test_small_image_strides_give_16_8_4_maps_and_logits(image_size, in_channels):
    model = mobilevit_s(num_classes=7, image_size=image_size, in_channels=in_channels)
    images = torch.randn(2, in_channels, image_size, image_size)
    first, second, last = model.forward_maps(images)  # 28×28 is padded to 32×32 first
    assert (first.shape, second.shape, last.shape) == ((2, 96, 16, 16), (2, 128, 8, 8), (2, 640, 4, 4))
    assert model(images).shape == (2, 7)
    assert model.forward_features(images).shape == (2, 640)
    assert model.padded_size == 32


def test_imagenet_schedule_keeps_total_stride_32():
    model = MobileViT(num_classes=3, image_size=64, output_stride=32, **TINY)
    assert [tuple(m.shape[-2:]) for m in model.forward_maps(torch.randn(1, 3, 64, 64))] == [(8, 8), (4, 4), (2, 2)]


def test_unfold_puts_same_position_pixels_of_all_patches_in_one_sequence():
    block = MobileViTBlock(4, 2, 1, 1, 2.0, patch_size=2, dropout=0.0, attention_dropout=0.0)
    rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(6.0), indexing="ij")
    feature_map = torch.stack([rows, cols]).unsqueeze(0)  # (1, 2, 4, 6): channel 0 = row, 1 = col
    patches = block.unfold(feature_map)  # (p², patches, d) = (4, 6, 2)
    assert patches.shape == (4, 6, 2)
    for i in range(2):
        for j in range(2):
            sequence = patches[i * 2 + j]  # pixel (i, j) of every 2×2 patch, patches row-major
            expected = [[2 * r + i, 2 * c + j] for r in range(2) for c in range(3)]
            assert sequence.tolist() == expected
    assert torch.equal(block.fold(patches, 4, 6), feature_map)


@pytest.mark.parametrize(("build", "millions"), [(mobilevit_xxs, 1.3), (mobilevit_xs, 2.3), (mobilevit_s, 5.6)])
def test_presets_match_the_papers_parameter_counts(build, millions):
    """The paper reports 1.3M / 2.3M / 5.6M at 1000 classes (rounded to 0.1M: ±0.05M). Without
    positional embeddings the count does not depend on the image size, and 10 classes save
    (final_dim + 1) · 990 classifier parameters."""
    imagenet = count_parameters(build(num_classes=1000, image_size=256, output_stride=32)).trainable
    small = build(num_classes=10, image_size=32)
    print(f"{build.__name__}: {imagenet} at 1000 classes, {count_parameters(small).trainable} at 10")
    assert abs(imagenet - millions * 1e6) <= 0.05e6
    assert count_parameters(small).trainable == imagenet - (small.head.in_features + 1) * 990


def conv_bn(cin: int, cout: int) -> int:
    """A bias-free 1×1 conv and its BatchNorm (weight and bias)."""
    return cin * cout + 2 * cout


@pytest.mark.parametrize("extension", [576, 640, 928])
def test_extension_adds_the_branches_and_the_wider_bias_free_classifier(extension):
    classes, (block1, block2, last_in, final) = 10, (96, 128, 160, 640)  # MobileViT-S widths
    c1, c2, c3 = EXTENSION_WIDTHS[extension]
    branches = conv_bn(block1, c1) + conv_bn(block2, c2)
    final_conv = conv_bn(last_in, c3) - conv_bn(last_in, final)  # c3 replaces the final 1×1 conv's width
    classifier = (c1 + c2 + c3) * classes - (final * classes + classes)
    plain = count_parameters(mobilevit_s(num_classes=classes)).trainable
    extended = mobilevit_s(num_classes=classes, extension=extension)
    assert count_parameters(extended).trainable - plain == branches + final_conv + classifier
    assert extended.head.bias is None and extended.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, extension)


def test_extension_928_costs_about_five_percent_of_mobilevit_s():
    """The paper: "about 5% additional parameters" (ImageNet, 1000 classes)."""
    plain = count_parameters(mobilevit_s(num_classes=1000)).trainable
    extended = count_parameters(mobilevit_s(num_classes=1000, extension=928)).trainable
    assert 0.04 < extended / plain - 1 < 0.07  # the paper's "about 5%"; the exact difference is checked above


@pytest.mark.parametrize("extension", [None, (4, 6, 12)])
def test_every_parameter_learns(extension):
    model = MobileViT(num_classes=3, image_size=28, in_channels=1, extension=extension, **TINY)
    model(torch.randn(2, 1, 28, 28)).square().sum().backward()
    silent = [
        name for name, parameter in model.named_parameters() if parameter.grad is None or not parameter.grad.any()
    ]
    assert silent == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (dict(channels=(8, 8, 8)), "channels"),
        (dict(transformer_dims=(8, 8, 9)), "num_heads"),
        (dict(transformer_depths=(1, -1, 1)), "transformer_depths"),
        (dict(extension=700), "extension"),
        (dict(extension=(4, 0, 8)), "extension"),
        (dict(output_stride=16), "output_stride"),
        (dict(patch_size=0), "patch_size"),
        (dict(dropout=1.0), "dropout"),
        (dict(head_dropout=-0.1), "head_dropout"),
        (dict(drop_path_rate=1.0), "drop_path_rate"),
        (dict(head_dim=0), "head_dim"),
        (dict(mlp_ratio=(2.0, 2.0)), "mlp_ratio"),
        (dict(mlp_ratio=(2.0, 0.0, 2.0)), "mlp_ratio"),
    ],
)
def test_invalid_arguments_name_the_field(options, field):
    with pytest.raises(ConfigError, match=field):
        MobileViT(**(TINY | options))


TINY_CLI = [
    "--model.backbone.init_args.channels=[8, 8, 8, 8, 8, 8]",
    "--model.backbone.init_args.transformer_dims=[8, 8, 8]",
    "--model.backbone.init_args.transformer_depths=[1, 1, 1]",
    "--model.backbone.init_args.final_dim=16",
    "--model.backbone.init_args.num_heads=2",
]


@pytest.mark.parametrize(
    ("dataset", "write", "pieces", "extra"),
    [
        ("mnist", write_mnist, ["mobilevit.yaml", "exmobilevit.yaml"], []),
        ("mnist", write_mnist, ["mobilevit.yaml", "exmobilevit_backbone.yaml", "exmobilevit.yaml"], []),
        ("cifar10", write_cifar10, ["mobilevit.yaml"], ["--data.init_args.verify_checksums", "false"]),
    ],
)
def test_fast_dev_run_through_the_cli(tmp_path, monkeypatch, capsys, wide_console, dataset, write, pieces, extra):
    write(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    model_pieces = [argument for piece in pieces for argument in ("-c", str(CONFIGS / "model" / piece))]
    main(
        [
            "fit",
            "-c",
            str(CONFIGS / "vir.yaml"),
            *model_pieces,
            "-c",
            str(CONFIGS / "data" / f"{dataset}.yaml"),
            *TINY_CLI,
            "--data.init_args.download",
            "false",
            "--data.init_args.batch_size",
            "8",
            *extra,
            "--trainer.fast_dev_run",
            "true",
            "--trainer.accelerator",
            "cpu",
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    summary = capsys.readouterr().out  # Lightning's model summary table
    assert re.search(r"backbone\s+│\s+MobileViT\b", summary)
    assert ("backbone.branches" in summary) == ("exmobilevit.yaml" in pieces)  # the extension is that one line


def drop_path_pair(rate: float) -> tuple[MobileViT, MobileViT]:
    """A tiny MobileViT (no dropout) with drop-path `rate` and one at rate 0 holding the same weights."""
    options = TINY | dict(num_classes=3, image_size=16, dropout=0.0, head_dropout=0.0, extension=(4, 4, 8))
    torch.manual_seed(0)
    dropping = MobileViT(**options, drop_path_rate=rate)
    plain = MobileViT(**options)
    plain.load_state_dict(dropping.state_dict())
    return dropping, plain


def test_drop_path_rate_0_is_the_model_without_stochastic_depth():
    model, _ = drop_path_pair(0.0)
    images = torch.randn(4, 3, 16, 16)
    with_rate_0 = model.train()(images)
    for block in model.residual_blocks():
        block.drop_path = torch.nn.Identity()
    assert torch.equal(model(images), with_rate_0)


def test_drop_path_is_stochastic_in_training_only():
    dropping, plain = drop_path_pair(0.5)
    images = torch.randn(4, 3, 16, 16)
    assert torch.equal(dropping.eval()(images), plain.eval()(images))
    torch.manual_seed(1)
    first, second = dropping.train()(images), dropping(images)  # (BatchNorm's running statistics move here)
    assert not torch.allclose(first, second)


def test_drop_path_rates_grow_linearly_over_the_residual_blocks_in_depth_order():
    """MobileViT-S: the two shape-keeping MV2 blocks of stage 2, then the 2 + 4 + 3 transformer layers."""
    model = mobilevit_s(drop_path_rate=0.2)
    blocks = model.residual_blocks()
    expected = [
        *model.stage2[1:],
        *(layer for stage in (3, 4, 5) for layer in getattr(model, f"stage{stage}")[1].layers),
    ]
    assert [id(block) for block in blocks] == [id(block) for block in expected]
    assert [block.drop_path.p for block in blocks] == pytest.approx([0.2 * i / 10 for i in range(11)], abs=1e-7)
    assert all(block.drop_path is None for block in (model.stage1[0], model.stage2[0], model.stage3[0]))


def test_transformer_layers_drop_the_p_squared_sequences_of_an_image_together():
    layer = MobileViTBlock(8, 8, 1, 2, 2.0, patch_size=2, dropout=0.0, attention_dropout=0.0).layers[0]
    layer.drop_path.p = 0.5
    torch.manual_seed(0)
    kept = layer.train().drop(torch.ones(64 * 4, 3, 8)).reshape(64, 4, 3 * 8)  # 64 images, p² = 4 sequences
    per_image = kept[:, :1].expand_as(kept)
    assert torch.equal(kept, per_image)  # one draw per image
    assert set(kept[:, 0, 0].tolist()) == {0.0, 2.0}  # dropped, or kept and scaled by 1/(1 - p)


def test_no_weight_decay_names_nothing_beyond_the_one_d_parameters():
    """No position embedding or class token: timm's `no_weight_decay` set is empty."""
    assert MobileViT(**TINY).no_weight_decay() == set()


def test_drop_path_1_leaves_only_the_shortcuts():
    """At rate 1 in training a transformer layer (both branches) and a shape-keeping MV2 block return their input."""
    layer = MobileViTBlock(8, 8, 1, 2, 2.0, patch_size=2, dropout=0.0, attention_dropout=0.0).layers[0]
    block = InvertedResidual(8, 8, stride=1, expand_ratio=2)
    layer.drop_path.p = block.drop_path.p = 1.0
    tokens, feature_map = torch.randn(8, 3, 8), torch.randn(2, 8, 4, 4)
    assert torch.equal(layer.train()(tokens), tokens)
    assert torch.equal(block.train()(feature_map), feature_map)


# Oracles: each block against the papers' equations written out with torch.nn.functional, in float64, with
# the block's own weights (BatchNorm and LayerNorm given non-trivial statistics and affines, eval mode).
# Widths are equal (C = d = 8) so a branch reading the wrong tensor still runs, and only its value is wrong.


def conv_norm_act(feature_map, layers, stride=1, groups=1, act=True):
    """ConvNormAct: k×k conv ('same' padding, no bias) → BatchNorm (→ SiLU)."""
    conv, norm = layers[0], layers[1]
    mapped = F.conv2d(feature_map, conv.weight, None, stride, conv.weight.shape[-1] // 2, 1, groups)
    mapped = F.batch_norm(mapped, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)
    return F.silu(mapped) if act else mapped


def transformer_layer(tokens, layer, heads):
    """Pre-norm: t += MSA(LN t); t += Linear(SiLU(Linear(LN t)))."""
    normed = F.layer_norm(tokens, tokens.shape[-1:], layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
    q, k, v = F.linear(normed, layer.attn.qkv.weight, layer.attn.qkv.bias).chunk(3, dim=-1)
    q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))  # (B, h, N, d_h)
    weights = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
    tokens = tokens + F.linear((weights @ v).transpose(1, 2).flatten(2), layer.attn.proj.weight, layer.attn.proj.bias)
    normed = F.layer_norm(tokens, tokens.shape[-1:], layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)
    hidden = F.silu(F.linear(normed, layer.mlp.fc1.weight, layer.mlp.fc1.bias))
    return tokens + F.linear(hidden, layer.mlp.fc2.weight, layer.mlp.fc2.bias)


def test_inverted_residual_follows_mobilenet_v2():
    """MV2: x + BN(conv1×1(SiLU(BN(dw3×3(SiLU(BN(conv1×1 x))))))); strided: no shortcut."""
    for stride, shortcut in ((1, True), (2, False)):
        block = randomize_norms(InvertedResidual(8, 8, stride=stride, expand_ratio=2))
        feature_map = torch.randn(2, 8, 6, 6, dtype=torch.float64)
        expand, depthwise, project = block.block
        hidden = conv_norm_act(conv_norm_act(feature_map, expand), depthwise, stride=stride, groups=16)
        mapped = conv_norm_act(hidden, project, act=False)
        expected = feature_map + mapped if shortcut else mapped
        torch.testing.assert_close(block(feature_map), expected, rtol=0, atol=1e-12)


def test_mobilevit_block_follows_local_unfold_transformer_fold_fusion():
    """y = conv1×1(SiLU(BN(conv3×3 x))); the pixels at offset (i, j) of every p×p patch form one sequence
    through the L layers and the LN; folded back, z = SiLU(BN(conv1×1 y')); out = SiLU(BN(conv3×3 [x ; z]))."""
    block = randomize_norms(MobileViTBlock(8, 8, 2, 2, 2.0, patch_size=2, dropout=0.0, attention_dropout=0.0))
    feature_map = torch.randn(2, 8, 4, 6, dtype=torch.float64)
    local = F.conv2d(conv_norm_act(feature_map, block.conv_local), block.conv_in.weight)  # (B, d, H, W)
    folded = torch.zeros_like(local)
    for i in range(2):
        for j in range(2):
            sequence = local[:, :, i::2, j::2].flatten(2).transpose(1, 2)  # (B, patches, d), patches row-major
            for layer in block.layers:
                sequence = transformer_layer(sequence, layer, 2)
            sequence = F.layer_norm(sequence, (8,), block.norm.weight, block.norm.bias, block.norm.eps)
            folded[:, :, i::2, j::2] = sequence.transpose(1, 2).reshape(2, 8, 2, 3)
    expected = conv_norm_act(torch.cat([feature_map, conv_norm_act(folded, block.conv_out)], dim=1), block.fusion)
    torch.testing.assert_close(block(feature_map), expected, rtol=0, atol=1e-12)


def test_extension_branches_read_mobilevit_blocks_1_and_2_and_the_head_reads_all_three():
    """features = [mean SiLU(BN(conv1×1 block1)) ; mean SiLU(BN(conv1×1 block2)) ; mean final_conv(stage 5)],
    block k the output of the k-th MobileViT block; logits = W features (no bias); 12×12 padded to 16×16."""
    model = randomize_norms(MobileViT(num_classes=3, image_size=12, extension=(4, 6, 12), **TINY))
    images = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    padded = F.pad(images, (2, 2, 2, 2))
    first = model.stage3(model.stage2(model.stage1(model.stem(padded))))
    second = model.stage4(first)
    last = model.final_conv(model.stage5(second))
    features = torch.cat(
        [
            conv_norm_act(first, model.branches[0]).mean((2, 3)),
            conv_norm_act(second, model.branches[1]).mean((2, 3)),
            last.mean((2, 3)),
        ],
        dim=1,
    )
    torch.testing.assert_close(model.forward_features(images), features, rtol=0, atol=1e-12)
    torch.testing.assert_close(model(images), features @ model.head.weight.T, rtol=0, atol=1e-12)


# The ExMobileViT repository's backbone (EmPasLab/ExMobileVIT 761e05a, models/basic_block.py).


def test_repository_block_is_the_official_equations():
    """Official: y = SiLU(BN(conv1×1(SiLU(BN(conv3×3 x))))); per offset sequence, L layers of
    t += to_out(4 heads of 8, q/k/v without bias)(LN t); t += Linear(SiLU(Linear(LN t))), no final LN;
    out = SiLU(BN(conv3×3 [z ; x])), z = SiLU(BN(conv1×1 y')). Ours fuses [x ; z]: the same conv with its
    input channels swapped. d = 16 while the heads span 32, so the head width is exercised."""
    block = MobileViTBlock(
        8, 16, 2, 4, 4.0, patch_size=2, dropout=0.0, attention_dropout=0.0, head_dim=8, qkv_bias=False,
        conv_in_norm_act=True, final_norm=False,
    )  # fmt: skip
    block = randomize_norms(block)
    assert block.layers[0].attn.qkv.bias is None and block.layers[0].attn.qkv.out_features == 3 * 32
    assert block.layers[0].attn.scale == 8**-0.5  # the softmax temperature lit_vir.quantization reads
    feature_map = torch.randn(2, 8, 4, 4, dtype=torch.float64)
    local = conv_norm_act(conv_norm_act(feature_map, block.conv_local), block.conv_in)  # (B, 16, 4, 4)
    folded = torch.zeros_like(local)
    for i in range(2):
        for j in range(2):
            sequence = local[:, :, i::2, j::2].flatten(2).transpose(1, 2)  # (B, 4 patches, 16)
            for layer in block.layers:
                sequence = transformer_layer(sequence, layer, 4)
            folded[:, :, i::2, j::2] = sequence.transpose(1, 2).reshape(2, 16, 2, 2)
    weight = block.fusion[0].weight  # (C, 2C, 3, 3) over [x ; z]
    official_fusion = [torch.nn.Conv2d(16, 8, 3, padding=1, bias=False).double(), block.fusion[1]]
    official_fusion[0].weight.data = torch.cat([weight[:, 8:], weight[:, :8]], dim=1)  # over [z ; x]
    expected = conv_norm_act(torch.cat([conv_norm_act(folded, block.conv_out), feature_map], dim=1), official_fusion)
    torch.testing.assert_close(block(feature_map), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("extension", "official"), [(576, 5_558_256), (640, 5_630_576), (928, 5_958_064)])
def test_exmobilevit_preset_counts_what_the_official_code_counts(extension, official):
    """The repository's ExMobileViT_{576,640,928}(num_classes=1000) count these parameters (summed numel):
    the backbone and the extension are the official ones; the paper reports "about 5%" more for 928."""
    model = exmobilevit_s(num_classes=1000, image_size=256, output_stride=32, extension=extension)
    assert count_parameters(model).trainable == official


def test_repository_baseline_is_the_official_mobilevit_plus_a_classifier_bias():
    """The repository's MobileViT (its baseline) counts 5,636,720 at 1000 classes with a bias-free fc."""
    model = exmobilevit_s(num_classes=1000, image_size=256, output_stride=32, extension=None)
    assert count_parameters(model).trainable == 5_636_720 + 1000


def test_backbone_piece_is_the_presets_backbone():
    piece = yaml.safe_load((CONFIGS / "model" / "exmobilevit_backbone.yaml").read_text())
    options = piece["model"]["init_args"]["backbone"]["init_args"]
    assert options == {
        key: list(value) if isinstance(value, tuple) else value for key, value in EXMOBILEVIT_BACKBONE.items()
    }


def mobilevit_refusal(**options) -> str:
    with pytest.raises(ConfigError) as error:
        MobileViT(**{**TINY, **options})
    return str(error.value)


def test_each_mobilevit_refusal_names_the_model_the_field_and_the_allowed_values():
    for field in ("num_classes", "image_size", "in_channels", "final_dim", "expand_ratio", "num_heads"):
        assert mobilevit_refusal(**{field: 0}) == f"MobileViT: {field} = 0 is outside the allowed range [1, inf)."
    assert mobilevit_refusal(channels=(8, 8)) == "MobileViT: channels = (8, 8) must be 6 integers ≥ 1."
    assert mobilevit_refusal(transformer_dims=(8, 0, 8)) == (
        "MobileViT: transformer_dims = (8, 0, 8) must be 3 integers ≥ 1."
    )
    assert mobilevit_refusal(transformer_depths=(1, -1, 1)) == (
        "MobileViT: transformer_depths = (1, -1, 1) must be 3 integers ≥ 0."
    )
    assert mobilevit_refusal(head_dim=0) == "MobileViT: head_dim = 0 is outside the allowed range [1, inf)."
    assert mobilevit_refusal(patch_size=0) == "MobileViT: patch_size = 0 is outside the allowed range [1, inf)."
    assert mobilevit_refusal(output_stride=16) == "MobileViT: output_stride = 16 is not one of 8, 32."
    assert mobilevit_refusal(attention_dropout=1.0) == (
        "MobileViT: attention_dropout = 1.0 is outside the allowed range [0, 1)."
    )
    assert mobilevit_refusal(drop_path_rate=1.0) == (
        "MobileViT: drop_path_rate = 1.0 is outside the allowed range [0, 1)."
    )
    assert mobilevit_refusal(extension=5) == (
        f"MobileViT: extension = 5 is not one of {', '.join(map(repr, EXTENSION_WIDTHS))}."
    )
    assert mobilevit_refusal(extension=(8, 8)) == "MobileViT: extension = (8, 8) must be 3 integers ≥ 1."


def test_the_smallest_accepted_options_build_a_model_that_runs():
    """Depth 0 transformers, head width 1, patch 1, MLP ratios below 1: each at its lowest allowed value."""
    model = MobileViT(**{**TINY, "transformer_depths": (0, 0, 0), "head_dim": 1, "patch_size": 1,
                         "mlp_ratio": 0.5}).eval()  # fmt: skip
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert model.num_classes == 10


def test_the_output_stride_is_8_up_to_64_pixels_and_32_above():
    """The default stride schedule: 8 for small images (the stem and two stages stride), 32 from 65 pixels on."""
    small, large = MobileViT(**TINY, image_size=64), MobileViT(**TINY, image_size=65)
    assert small.output_stride == 8 and large.output_stride == 32
