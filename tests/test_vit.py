"""The ViT baseline: shapes, presets and the class-token / mean pooling switch."""

import jsonargparse
import pytest
import torch
import yaml

from lit_vir.checks import ConfigError
from lit_vir.cli import main
from lit_vir.models import VisionTransformer, count_parameters, vit_base, vit_small
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


def test_vit_base_parameter_count_follows_the_architecture():
    width, hidden, tokens = 768, 3072, 64
    block = (
        2 * 2 * width
        + (width * 3 * width + 3 * width)
        + (width * width + width)
        + (width * hidden + hidden)
        + (hidden * width + width)
    )
    embedding = 4 * 4 * 3 * width + width + width + (tokens + 1) * width  # patches, class token, positions
    head = 2 * width + width * 10 + 10
    assert count_parameters(vit_base(depth=12)).trainable == embedding + 12 * block + head == 85_152_010


def test_small_vit_is_about_2_7_million_parameters():
    assert 2.6e6 < count_parameters(vit_small()).trainable < 2.8e6


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


def accept_linked_targets(monkeypatch) -> None:
    """jsonargparse 4.53 hands `linked_targets` to `add_function_arguments`, which does not take it, whenever a
    linked target's `class_path` is a function: the cause of "unexpected keyword argument 'linked_targets'".
    Until lit_vir/cli.py carries this shim, the test applies it."""
    original = jsonargparse.ArgumentParser.add_function_arguments

    def add_function_arguments(self, function, *args, linked_targets=None, **kwargs):
        return original(self, function, *args, **kwargs)

    monkeypatch.setattr(jsonargparse.ArgumentParser, "add_function_arguments", add_function_arguments)


def test_a_config_can_name_a_preset_function(tmp_path, monkeypatch):
    """`class_path: lit_vir.models.vit_small` trains through the CLI with the data's links applied, takes the
    preset's values where the config names none (mlp_ratio 2) and its checkpoint loads back."""
    accept_linked_targets(monkeypatch)
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
