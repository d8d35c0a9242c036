"""Any timm model as a comparator: linked sizes, padding for deep strides, clear errors, noise perturbation."""

import difflib
import os
import subprocess
import sys

import pytest
import timm
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


@pytest.mark.parametrize(
    ("name", "size", "channels", "options"),
    [("resnet18", 28, 1, {}), ("deit_tiny_patch16_224", 32, 3, {"patch_size": 8}), ("convnext_atto", 28, 1, {})],
)
def test_the_wrapped_model_is_timms_own_for_the_same_seed(name, size, channels, options):
    """timm.create_model itself is the reference: the same weights from the same seed, and the same logits."""
    pad_to = 32 if name.startswith("convnext") else None
    torch.manual_seed(3)
    ours = TimmModel(5, size, channels, name=name, options=options, pad_to=pad_to, drop_path_rate=0.1)
    torch.manual_seed(3)
    keywords = dict(num_classes=5, in_chans=channels, drop_path_rate=0.1, **options)
    if name.startswith("deit"):
        keywords["img_size"] = size
    reference = timm.create_model(name, pretrained=False, **keywords)
    assert ours.model.state_dict().keys() == reference.state_dict().keys()
    for key, value in reference.state_dict().items():
        assert torch.equal(ours.model.state_dict()[key], value), key
    assert ours.model.training and reference.training  # the dry forward at construction left train mode on
    images = torch.randn(2, channels, size, size)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2)) if pad_to else images
    assert torch.equal(ours.eval()(images), reference.eval()(padded))


def test_stochastic_depth_reaches_timms_blocks_only_when_asked():
    deep = TimmModel(10, 28, 1, name="resnet18", drop_path_rate=0.2)
    rates = [block.drop_path.drop_prob for block in deep.model.modules() if getattr(block, "drop_path", None)]
    assert rates and max(rates) == pytest.approx(0.2)  # timm spreads it linearly over the blocks, up to the rate
    plain = TimmModel(10, 28, 1, name="resnet18")
    assert all(getattr(block, "drop_path", None) is None for block in plain.model.modules())
    with pytest.raises(ConfigError, match="drop_path_rate"):
        TimmModel(10, 28, 1, name="resnet18", drop_path_rate=1.5)


def test_pad_to_an_odd_margin_puts_the_extra_row_and_column_after_and_skips_images_already_that_size():
    model = TimmModel(10, 28, 1, name="resnet18", pad_to=31).eval()  # batch norm of one image: eval
    seen = []
    model.model.conv1.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    images = torch.randn(1, 1, 28, 28)
    model(images)
    assert seen[0].shape == (1, 1, 31, 31) and torch.equal(seen[0][:, :, 1:29, 1:29], images)
    assert (
        seen[0][:, :, 0].abs().sum() == 0 and seen[0][:, :, 29:].abs().sum() == 0 and seen[0][..., 29:].abs().sum() == 0
    )
    already = torch.randn(1, 1, 31, 31)
    model(already)
    assert torch.equal(seen[1], already)


def test_pad_to_below_the_image_size_is_refused_with_the_bound():
    with pytest.raises(ConfigError, match=r"TimmModel: pad_to = 24 is outside .*It must be at least image_size = 28\."):
        TimmModel(10, 28, 1, name="resnet18", pad_to=24)


def test_weight_decay_exemptions_are_timms_under_the_wrappers_name():
    vit = TimmModel(10, 32, 3, name="deit_tiny_patch16_224", options={"patch_size": 8})
    assert vit.no_weight_decay() == {f"model.{name}" for name in vit.model.no_weight_decay()}
    assert {"model.pos_embed", "model.cls_token"} <= vit.no_weight_decay()
    assert TimmModel(10, 28, 1, name="resnet18").no_weight_decay() == set()


def test_an_option_timm_refuses_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match=r"TimmModel: timm.create_model\('resnet18', \.\.\.\) refused an option: .*"):
        TimmModel(10, 28, 1, name="resnet18", options={"no_such_option": 1})


def test_the_defaults_are_a_resnet18_for_cifar():
    model = TimmModel()
    assert model.name == "resnet18" and model.model.fc.out_features == 10 and model.model.conv1.in_channels == 3
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_an_unknown_name_lists_six_close_ones_word_for_word():
    with pytest.raises(ConfigError) as refusal:
        TimmModel(10, 28, 1, name="resnet1")
    close = difflib.get_close_matches("resnet1", timm.list_models(), n=6, cutoff=0.6)
    assert len(close) == 6 and len(difflib.get_close_matches("resnet1", timm.list_models(), n=7)) == 7
    assert str(refusal.value) == f"TimmModel: name = 'resnet1' is not a timm model; similar ones: {', '.join(close)}."


def test_a_too_deep_model_and_a_bad_drop_path_rate_are_refused_word_for_word():
    with pytest.raises(ConfigError) as refusal:
        TimmModel(10, 28, 1, name="convnext_atto")
    message = str(refusal.value)
    assert message.startswith("TimmModel: convnext_atto cannot take 28×28 images (")
    assert message.endswith("). Its strides need larger inputs: set pad_to (e.g. 32 for ConvNeXt on 28×28 data).")
    assert "\n" not in message and len(message) > 160  # the first line of torch's own reason is inside
    with pytest.raises(ConfigError, match=r"^TimmModel: drop_path_rate = 1\.5"):
        TimmModel(10, 28, 1, name="resnet18", drop_path_rate=1.5)


def test_weights_the_hub_cannot_send_are_a_config_error_with_the_first_line_of_the_reason(monkeypatch):
    """A stand-in for the Hub (the offline subprocess test above is the real path, but it cannot see a mutated copy
    of this module): timm.create_model raises as a failed download does."""
    real = timm.create_model

    def offline(name, pretrained=False, **keywords):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'\nCheck your connection")
        return real(name, pretrained=pretrained, **keywords)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ConfigError) as refusal:
        TimmModel(10, 28, 1, name="resnet18", pretrained=True)
    assert str(refusal.value) == (
        "TimmModel: the pretrained weights of 'resnet18' could not be loaded (OSError: We couldn't connect to "
        "'https://huggingface.co'). timm downloads them from the Hugging Face Hub, which needs the internet; "
        "lit_vir's comparisons train from scratch: set pretrained: false."
    )

    def silent(name, pretrained=False, **keywords):
        raise OSError() if pretrained else RuntimeError("not about the weights")

    monkeypatch.setattr(timm, "create_model", silent)
    with pytest.raises(ConfigError, match=r"could not be loaded \(OSError: \)\. timm downloads"):
        TimmModel(10, 28, 1, name="resnet18", pretrained=True)
    with pytest.raises(RuntimeError, match=r"^not about the weights$"):  # without pretrained: timm's own error
        TimmModel(10, 28, 1, name="resnet18")
