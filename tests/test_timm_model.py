"""Any timm model as a comparator: linked sizes, padding for deep strides, clear errors, noise perturbation."""

import os
import subprocess
import sys

import pytest
import torch

from lit_vir.checks import ConfigError
from lit_vir.models import TimmModel, VisionTransformer
from lit_vir.robustness.perturb import Perturbation, noisy_weights, perturbed


def test_a_vit_is_built_for_the_datasets_image_size_and_channels():
    model = TimmModel(7, 28, 1, name="deit_tiny_patch16_224", options={"patch_size": 4})
    assert model.model.patch_embed.num_patches == 49 and model.model.patch_embed.proj.in_channels == 1
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)


def test_pad_to_centres_the_image_in_zeros():
    model = TimmModel(10, 28, 1, name="convnext_atto", pad_to=32)
    seen = {}
    model.model.stem.register_forward_hook(lambda module, inputs, output: seen.update(image=inputs[0]))
    images = torch.randn(1, 1, 28, 28)
    model(images)
    assert seen["image"].shape == (1, 1, 32, 32)
    assert torch.equal(seen["image"][:, :, 2:30, 2:30], images) and seen["image"][:, :, :2].abs().sum() == 0


def test_a_model_too_deep_for_the_images_is_refused_at_construction_with_the_fix():
    with pytest.raises(ConfigError, match=r"convnext_atto cannot take 28×28 images .*set pad_to"):
        TimmModel(10, 28, 1, name="convnext_atto")


def test_an_unknown_name_lists_close_ones():
    with pytest.raises(ConfigError, match=r"'resnet_18' is not a timm model; similar ones: resnet18"):
        TimmModel(10, 28, 1, name="resnet_18")


def test_pretrained_weights_offline_fail_with_the_reason_and_the_switch():
    code = "from lit_vir.models import TimmModel; TimmModel(10, 28, 1, name='resnet18', pretrained=True)"
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120)
    assert done.returncode != 0
    assert "Hugging Face Hub, which needs the internet" in done.stderr and "set pretrained: false" in done.stderr


def test_noise_perturbs_every_weight_matrix_of_a_cnn_and_only_attention_and_mlp_of_a_vit():
    cnn = TimmModel(10, 28, 1, name="resnet18")
    assert {id(p) for p in noisy_weights(cnn)} == {id(p) for p in cnn.parameters() if p.dim() >= 2}
    vit = VisionTransformer(10, 8, 1, patch_size=4, embed_dim=16, depth=1, num_heads=2)
    names = {id(p): n for n, p in vit.named_parameters()}
    assert {names[id(p)] for p in noisy_weights(vit)} == {
        "blocks.0.attn.qkv.weight",
        "blocks.0.attn.proj.weight",
        "blocks.0.mlp.fc1.weight",
        "blocks.0.mlp.fc2.weight",
    }
    noisy = perturbed(cnn, Perturbation("noise", 0.1), seed=0)
    changed = [a for a, b in zip(noisy.parameters(), cnn.parameters(), strict=True) if not torch.equal(a, b)]
    assert len(changed) == len(noisy_weights(cnn))
