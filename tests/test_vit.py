"""The ViT baseline: shapes, presets and the class-token / mean pooling switch."""

import pytest
import torch

from lit_vir.checks import ConfigError
from lit_vir.models import VisionTransformer, count_parameters, vit_base, vit_small


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
