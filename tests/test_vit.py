"""The ViT baseline: shapes, presets and the class-token / mean pooling switch."""

import re

import pytest
import torch
import yaml

from lit_vir.checks import ConfigError
from lit_vir.cli import main
from lit_vir.models import VisionTransformer, count_parameters, vit_base, vit_small
from lit_vir.models.vit import Attention, Block, Mlp
from lit_vir.training.checkpoints import load_classifier
from tests.conftest import CONFIGS, QUICK_TRAINER


@pytest.mark.parametrize("pooling", ["token", "mean"])
def test_output_and_feature_shapes(pooling):
    model = VisionTransformer(
        num_classes=7, image_size=28, in_channels=1, patch_size=7, embed_dim=32, depth=2, num_heads=4, pooling=pooling
    )
    images = torch.randn(3, 1, 28, 28)
    assert model(images).shape == (3, 7)
    assert model.forward_features(images).shape == (3, 1 + 16, 32)  # class token + T


def test_every_parameter_learns():
    model = VisionTransformer(
        num_classes=3, image_size=8, in_channels=3, patch_size=4, embed_dim=16, depth=2, num_heads=2
    )
    model(torch.randn(2, 3, 8, 8)).square().sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().max() > 0, name  # reached, and not a zero


def test_vit_base_has_base_width_at_every_depth():
    for depth in (1, 3):
        model = vit_base(depth=depth)
        assert len(model.blocks) == depth
        assert model.blocks[0].mlp.fc1.out_features == 3072 and model.blocks[0].attn.num_heads == 12


def vit_parameters(width: int, hidden: int, depth: int, tokens: int = 64, classes: int = 10) -> int:
    """A 32×32 RGB ViT's trainable parameters by hand: patch 4, two LayerNorms and the four Linears per block."""
    block = (
        2 * 2 * width
        + (width * 3 * width + 3 * width)
        + (width * width + width)
        + (width * hidden + hidden)
        + (hidden * width + width)
    )
    embedding = 4 * 4 * 3 * width + width + width + (tokens + 1) * width  # patches, class token, positions
    head = 2 * width + width * classes + classes
    return embedding + depth * block + head


def test_vit_base_parameter_count_follows_the_architecture():
    assert count_parameters(vit_base(depth=12)).trainable == vit_parameters(768, 3072, 12) == 85_152_010


def test_small_vit_is_about_2_7_million_parameters():
    """The docstring's ≈2.7M: D 192, MLP 384, depth 9."""
    assert count_parameters(vit_small()).trainable == vit_parameters(192, 384, 9) == 2_697_610


PRESETS = [
    "vit_base", "vit_small", "revit_base", "revit_small", "mobilevit_s", "mobilevit_xs", "mobilevit_xxs",
    "exmobilevit_s", "vitae_v2_s", "vitae_v2_28", "vitae_v2_32",
]  # fmt: skip


@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_refuses_positional_arguments_naming_what_they_would_have_set(name):
    """The README once documented `vit_base(depth)`; the presets take the constructor's parameters, whose first
    is `num_classes`, so `vit_base(3)` must fail loudly rather than build a 3-class model of the default depth."""
    import inspect

    import lit_vir.models

    build = getattr(lit_vir.models, name)
    assert all(p.kind is p.KEYWORD_ONLY for p in inspect.signature(build).parameters.values())
    with pytest.raises(TypeError, match=rf"^{name}\(\) takes keyword arguments only; .* read as num_classes=3\. "):
        build(3)


def test_the_preset_list_is_every_preset_the_models_export():
    import lit_vir.models

    exported = [name for name in lit_vir.models.__all__ if hasattr(getattr(lit_vir.models, name), "defaults")]
    assert sorted(exported) == sorted(PRESETS)


def test_vit_base_by_keyword_builds_the_depth_asked_for():
    model = vit_base(depth=3)
    assert len(model.blocks) == 3 and model.head.out_features == 10  # the default classes, not 3


def test_heads_must_divide_the_width():
    with pytest.raises(ConfigError, match="embed_dim = 100 is not divisible by num_heads = 12"):
        VisionTransformer(embed_dim=100, num_heads=12)


def test_state_dict_keys_are_the_checkpoints_keys():
    """Checkpoints written before the block classes became injectable still load: the same names."""
    model = VisionTransformer(
        num_classes=3, image_size=8, in_channels=1, patch_size=4, embed_dim=8, depth=1, num_heads=2
    )
    layers = ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"]
    block = [f"blocks.0.{layer}.{kind}" for layer in layers for kind in ("weight", "bias")]
    expected = ["cls_token", "pos_embed", "patch_embed.weight", "patch_embed.bias", *block]
    assert list(model.state_dict()) == [*expected, "norm.weight", "norm.bias", "head.weight", "head.bias"]


def test_a_config_can_name_a_preset_function(tmp_path, monkeypatch):
    """`class_path: lit_vir.models.vit_small` trains through the CLI with the data's links applied, takes the
    preset's values where the config names none (mlp_ratio 2) and its checkpoint loads back."""
    monkeypatch.chdir(tmp_path)
    piece = tmp_path / "preset.yaml"
    backbone = {"class_path": "lit_vir.models.vit_small", "init_args": {"embed_dim": 16, "num_heads": 2, "depth": 2}}
    piece.write_text(yaml.safe_dump({"model": {"init_args": {"backbone": backbone}}}))
    data = ["-c", str(CONFIGS / "data" / "digits.yaml")]
    main(["fit", "-c", str(CONFIGS / "vir.yaml"), *data, "-c", str(piece), *QUICK_TRAINER])
    model = load_classifier(tmp_path / "logs" / "vit_small-digits" / "version_0" / "checkpoints" / "last.ckpt").backbone
    assert type(model) is VisionTransformer and model.num_classes == 10 and model.patch_embed.in_channels == 1
    assert model.blocks[0].mlp.fc1.out_features == 2 * 16 and len(model.blocks) == 2


# ------------------------------------------------------------------------ stochastic depth, weight decay

FAMILY_TINY = dict(num_classes=3, image_size=8, in_channels=3, patch_size=4, embed_dim=16, depth=4, num_heads=2)


def family(name: str, **options) -> torch.nn.Module:
    """A tiny member of the ViT family, its weights away from the near-zero init (O(1) logits)."""
    from lit_vir.models import ReViT, SearchableViT, slim

    if name == "slim":
        return slim(family("search", **options), 0.6)
    build = {"vit": VisionTransformer, "revit": ReViT, "search": SearchableViT}[name]
    torch.manual_seed(0)
    model = build(**FAMILY_TINY, **options)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape))
    return model


def images(count: int = 6) -> torch.Tensor:
    return torch.randn(count, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def without_drop_path(model: torch.nn.Module) -> torch.Tensor:
    """The ViT's forward written out with no stochastic depth at all: the reference for rate 0."""
    tokens = model.tokens(images())
    for block in model.blocks:
        tokens = tokens + block.attn(block.norm1(tokens))
        tokens = tokens + block.mlp(block.norm2(tokens))
    return model.forward_head(model.norm(tokens))


def test_drop_path_at_rate_zero_is_the_model_without_it_in_training():
    model = family("vit", drop_path_rate=0.0).train()
    with torch.no_grad():
        assert torch.equal(model(images()), without_drop_path(model))


@pytest.mark.parametrize("name", ["vit", "revit", "search", "slim"])
def test_drop_path_is_stochastic_in_training_and_off_in_evaluation(name):
    model = family(name, drop_path_rate=0.5)
    reference = family(name, drop_path_rate=0.0)
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        model.train()
        first, second = model(images()), model(images())
        assert (first - second).abs().max() > 1e-3
        model.eval(), reference.eval()
        assert torch.equal(model(images()), model(images()))
        torch.testing.assert_close(model(images()), reference(images()), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["vit", "revit", "search", "slim"])
def test_drop_path_rates_rise_linearly_over_the_blocks(name):
    model = family(name, drop_path_rate=0.3)
    assert [block.drop_path.p for block in model.blocks] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert all(block.drop_path.mode == "row" for block in model.blocks)


@pytest.mark.parametrize("name", ["vit", "revit", "search", "slim"])
def test_a_block_dropped_with_certainty_is_the_identity_on_both_branches(name):
    """Rate 1 drops both residual branches of every sample: the block passes its tokens through unchanged."""
    model = family(name).train()
    for block in model.blocks:
        block.drop_path.p = 1.0
    with torch.no_grad():
        tokens = model.tokens(images()) if name != "slim" else None
        if name == "vit":
            assert torch.equal(model.blocks[1](tokens), tokens)
        elif name == "revit":
            assert torch.equal(model.blocks[1](tokens, None, model.alpha)[0], tokens)
        elif name == "search":
            masks = (model.attention_mask[1], model.mlp_mask[1], model.token_mask[1])
            assert torch.equal(model.blocks[1](tokens, *masks), tokens)
        else:
            tokens = torch.randn(6, model.blocks[1].num_tokens, 16)
            assert torch.equal(model.blocks[1](tokens), tokens)


def test_drop_path_rate_of_one_or_more_is_refused():
    with pytest.raises(ConfigError, match="drop_path_rate"):
        VisionTransformer(**FAMILY_TINY, drop_path_rate=1.0)


@pytest.mark.parametrize(
    ("name", "exempt"),
    [
        ("vit", {"pos_embed", "cls_token"}),
        ("revit", {"pos_embed", "cls_token", "alpha"}),
        ("search", {"pos_embed", "cls_token", "attention_mask", "mlp_mask", "token_logit"}),
        ("slim", {"pos_embed", "cls_token"}),
    ],
)
def test_no_weight_decay_names_every_parameter_that_is_not_a_weight_matrix_bias_or_norm(name, exempt):
    """With biases, norms and ≤1-d parameters exempt by shape, what decays is exactly the Linear and
    convolution weights: every other parameter of 2 or more dimensions is named by `no_weight_decay`."""
    model = family(name)
    parameters = dict(model.named_parameters())
    assert model.no_weight_decay() == exempt and exempt <= set(parameters)
    matrices = {
        f"{module}.weight"
        for module, layer in model.named_modules()
        if type(layer) in (torch.nn.Linear, torch.nn.Conv2d)
    }
    decayed = {name for name, parameter in parameters.items() if parameter.dim() >= 2 and name not in exempt}
    assert decayed == {name for name in matrices if name in parameters}


# ------------------------------------------------------------------------------------- oracle: timm's ViT


@pytest.mark.parametrize("pooling", ["token", "mean"])
def test_logits_equal_timms_vision_transformer_with_the_same_weights(pooling):
    from tests.vit_oracle import spread, timm_twin

    model = spread(VisionTransformer(**(FAMILY_TINY | {"depth": 3}), pooling=pooling, mlp_ratio=2.0))
    twin = timm_twin(model)
    inputs = images().double()
    with torch.no_grad():
        torch.testing.assert_close(model(inputs), twin(inputs), rtol=0, atol=1e-10)
        assert model(inputs).std() > 0.1  # O(1) logits: the comparison is not between two near-zero outputs


# ------------------------------------------------------------------- options: checks, defaults, forwarding

TINY_FRAME = dict(num_classes=3, image_size=8, in_channels=3, patch_size=4, embed_dim=16, depth=1, num_heads=2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_classes": 0}, "num_classes = 0 is outside the allowed range [1, inf)."),
        ({"patch_size": 3}, "patch_size (P) = 3 does not divide image_size = 8; choose one of [1, 2, 4, 8]."),
        ({"dropout": 1.0}, "dropout = 1.0 is outside the allowed range [0, 1)."),
        ({"drop_path_rate": 1.0}, "drop_path_rate = 1.0 is outside the allowed range [0, 1)."),
        ({"pooling": "max"}, "pooling = 'max' is not one of 'token', 'mean'."),
        ({"depth": 0}, "depth (L) = 0 is outside the allowed range [1, inf)."),
        ({"num_heads": 0}, "num_heads = 0 is outside the allowed range [1, inf)."),
        ({"mlp_ratio": 0.0}, "mlp_ratio = 0.0 is outside the allowed range (0, inf)."),
        ({"attention_dropout": 1.0}, "attention_dropout = 1.0 is outside the allowed range [0, 1)."),
    ],
)
def test_a_bad_option_is_refused_with_owner_field_value_and_range(options, message):
    """The whole message as `lit_vir.checks` writes it, the owner being the class the config names."""
    with pytest.raises(ConfigError, match=f"^{re.escape('VisionTransformer: ' + message)}$"):
        VisionTransformer(**(TINY_FRAME | options))


def test_the_smallest_allowed_values_are_accepted():
    """One class, one head, an MLP narrower than D: the lower bounds are 1, 1 and 0 (exclusive)."""
    model = VisionTransformer(**(TINY_FRAME | {"num_classes": 1, "num_heads": 1, "mlp_ratio": 0.5}))
    assert model.head.out_features == 1
    assert model.blocks[0].attn.num_heads == 1 and model.blocks[0].attn.head_dim == 16
    assert model.blocks[0].mlp.fc1.out_features == 8


@pytest.fixture
def no_initialisation(monkeypatch):
    """Skip every weight draw: the defaults below are read from the shapes of a ViT-Base, not its values."""
    from lit_vir.models.vit import ViTFrame

    for layer in (torch.nn.Linear, torch.nn.Conv2d, torch.nn.LayerNorm, ViTFrame):
        monkeypatch.setattr(layer, "reset_parameters", lambda self: None)


def test_vision_transformer_defaults_are_vit_base_on_cifar(no_initialisation):
    """`VisionTransformer()`: 10 classes of 32×32 RGB, patch 4, D 768, 12 blocks of 12 heads, MLP 3072, no
    dropout or stochastic depth, class-token pooling."""
    model = VisionTransformer()
    assert model.patch_embed.kernel_size == model.patch_embed.stride == (4, 4) and model.patch_embed.in_channels == 3
    assert model.pos_embed.shape == (1, 1 + 8 * 8, 768) and model.head.out_features == 10 and len(model.blocks) == 12
    assert model.pooling == "token" and model.pos_drop.p == 0.0
    for block in model.blocks:
        assert block.attn.num_heads == 12 and block.mlp.fc1.out_features == 3072 and block.drop_path.p == 0.0
        assert block.attn.attention_dropout == 0.0 and block.attn.proj_drop.p == 0.0 and block.mlp.drop.p == 0.0


def dropout_rates(block) -> dict[str, float]:
    return {
        "attention": block.attn.attention_dropout,
        "projection": block.attn.proj_drop.p,
        "mlp": block.mlp.drop.p,
        "drop_path": block.drop_path.p,
        "hidden": block.mlp.fc1.out_features,
    }


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: Attention(8, 2), {"attention": 0.0, "projection": 0.0}),
        (lambda: Mlp(8, 16), {"mlp": 0.0}),
        (lambda: Block(8, 2), {"attention": 0.0, "projection": 0.0, "mlp": 0.0, "drop_path": 0.0, "hidden": 32}),
        (
            lambda: Block(8, 2, 2.0, 0.1, 0.2, drop_path=0.3),
            {"attention": 0.2, "projection": 0.1, "mlp": 0.1, "drop_path": 0.3, "hidden": 16},
        ),
    ],
)
def test_layer_defaults_and_forwarded_rates(build, expected):
    """Defaults: MLP ×4, no dropout, no stochastic depth; a Block hands its rates to the right modules."""
    layer = build()
    if isinstance(layer, Attention):
        seen = {"attention": layer.attention_dropout, "projection": layer.proj_drop.p}
    elif isinstance(layer, Mlp):
        seen = {"mlp": layer.drop.p}
    else:
        seen = dropout_rates(layer)
    assert seen == expected


def test_vision_transformer_hands_dropout_and_attention_dropout_to_every_block():
    model = VisionTransformer(**(TINY_FRAME | {"depth": 2}), mlp_ratio=2.0, dropout=0.1, attention_dropout=0.2)
    assert model.pos_drop.p == 0.1
    expected = {"attention": 0.2, "projection": 0.1, "mlp": 0.1, "drop_path": 0.0, "hidden": 32}
    assert [dropout_rates(block) for block in model.blocks] == [expected, expected]


def test_initial_weights_follow_timms_truncated_normal():
    """Positions, class token and Linear weights are drawn with std 0.02 (biases 0); the sample standard
    deviations are within 5 of their standard errors σ/√(2n) of it."""
    torch.manual_seed(0)
    model = VisionTransformer(num_classes=10, image_size=32, patch_size=4, embed_dim=64, depth=1, num_heads=2)
    qkv = model.blocks[0].attn.qkv
    for tensor in (model.pos_embed, model.cls_token, qkv.weight):
        assert tensor.std().item() == pytest.approx(0.02, rel=5 / (2 * tensor.numel()) ** 0.5)
    assert torch.equal(qkv.bias, torch.zeros_like(qkv.bias))


# ------------------------------------------------------------------------------ attention and its dropout


def plain_attention(attention: Attention, tokens: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ/√d)·v per head, then the projection, written with nothing but matmuls (float64)."""
    batch, length, width = tokens.shape
    heads, size = attention.num_heads, width // attention.num_heads
    qkv = tokens @ attention.qkv.weight.T + attention.qkv.bias  # (B, T, 3D)
    q, k, v = (qkv[..., part * width : (part + 1) * width].reshape(batch, length, heads, size) for part in range(3))
    logits = torch.einsum("bthd,bshd->bhts", q, k) / size**0.5
    mixed = torch.einsum("bhts,bshd->bthd", logits.softmax(dim=-1), v).reshape(batch, length, width)
    return mixed @ attention.proj.weight.T + attention.proj.bias


def attention_with_dropout() -> tuple[Attention, torch.Tensor]:
    torch.manual_seed(0)
    attention = Attention(8, 2, attention_dropout=0.5).double()
    with torch.no_grad():
        for parameter in attention.parameters():
            parameter.copy_(torch.randn(parameter.shape))  # O(1) logits: the weights are far from uniform
    return attention, torch.randn(2, 5, 8, dtype=torch.float64)


def test_attention_in_evaluation_is_the_plain_computation_at_any_dropout():
    """Both the fused `forward` and the step-by-step path ReViT and the quantiser use drop nothing in
    evaluation, though the attention dropout is 0.5."""
    attention, tokens = attention_with_dropout()
    attention.eval()
    with torch.no_grad():
        reference = plain_attention(attention, tokens)
        q, k, v = attention.split_heads(tokens)
        stepwise = attention.merge_heads(attention.weighted_values(attention.softmax(attention.scores(q, k)), v))
        torch.testing.assert_close(attention(tokens), reference, rtol=0, atol=1e-12)
        torch.testing.assert_close(stepwise, reference, rtol=0, atol=1e-12)


def test_attention_dropout_in_training_is_random_and_unbiased():
    """In training the fused path drops attention weights: one input repeated over a large batch gives
    outputs that vary, whose mean is the evaluation output (dropout scales kept weights by 1/(1 − p)) within
    5 standard errors."""
    attention, tokens = attention_with_dropout()
    repeated = tokens[:1].expand(4000, -1, -1)
    with torch.no_grad():
        outputs = attention.train()(repeated)  # (4000, T, D)
        expected = attention.eval()(tokens[:1])[0]
    spread = outputs.std(dim=0)
    assert spread.min() > 0.01
    assert ((outputs.mean(dim=0) - expected).abs() <= 5 * spread / len(outputs) ** 0.5).all()
