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
    assert all(parameter.grad is not None for parameter in model.parameters())


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
