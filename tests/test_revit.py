"""ReViT: residual attention on the ViT baseline, attention maps, the collapse measure and α in TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_vir.analysis.attention import attention_maps, cross_layer_similarity, mean_cross_layer_similarity
from lit_vir.checks import ConfigError
from lit_vir.cli import main
from lit_vir.commands.common import datamodule_from_configs
from lit_vir.models import ReViT, VisionTransformer, count_parameters, revit_small
from lit_vir.training.checkpoints import load_classifier
from tests.conftest import CONFIGS, QUICK_TRAINER
from tests.fakedata import write_mnist

TINY = dict(
    num_classes=5, image_size=16, in_channels=3, patch_size=4, embed_dim=24, depth=3, num_heads=3, mlp_ratio=2.0
)


def spread(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights far from the near-zero init, so attention is far from uniform and logits are O(1)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 0:
                parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def images(count: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(count, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("pooling", ["token", "mean"])
def test_alpha_one_gives_back_the_vit(pooling):
    vit = spread(VisionTransformer(**TINY, pooling=pooling))
    revit = ReViT(**TINY, pooling=pooling, alpha=1.0, learn_alpha=False).eval()
    loaded = revit.load_state_dict(vit.state_dict(), strict=False)
    assert (loaded.missing_keys, loaded.unexpected_keys) == (["alpha"], [])
    with torch.no_grad():
        torch.testing.assert_close(revit(images()), vit(images()), rtol=1e-5, atol=1e-6)


def test_mixed_logits_follow_the_update_and_are_carried_on():
    revit = spread(ReViT(**TINY, alpha=0.3))
    alpha = 0.3
    with torch.no_grad():
        tokens, residual = revit.tokens(images()), None
        for block in revit.blocks:
            q, k, _ = block.attn.split_heads(block.norm1(tokens))
            own = (q @ k.transpose(-2, -1)) * block.attn.scale
            tokens, mixed, weights = revit.residual_block(block, tokens, residual)
            expected = own if residual is None else alpha * own + (1 - alpha) * residual
            torch.testing.assert_close(mixed, expected)
            torch.testing.assert_close(weights, expected.softmax(dim=-1))
            residual = mixed


def test_block_zero_is_unmixed_and_later_blocks_differ_from_the_vit():
    vit = spread(VisionTransformer(**TINY))
    revit = ReViT(**TINY, alpha=0.5).eval()
    revit.load_state_dict(vit.state_dict(), strict=False)
    with torch.no_grad():
        vit_maps, revit_maps = attention_maps(vit, images()), attention_maps(revit, images())
    torch.testing.assert_close(revit_maps[0], vit_maps[0])
    assert (revit_maps[1] - vit_maps[1]).abs().max() > 1e-3


def test_one_alpha_shared_by_all_blocks_receives_gradients():
    revit = ReViT(**TINY)
    assert [name for name, _ in revit.named_parameters() if "alpha" in name] == ["alpha"]
    assert revit.alpha.shape == () and revit.alpha.item() == 0.5
    spread(revit).train()
    revit(images()).square().sum().backward()
    assert revit.alpha.grad is not None and revit.alpha.grad.abs() > 0


def test_fixed_alpha_is_not_trained():
    revit = ReViT(**TINY, alpha=0.5, learn_alpha=False)
    revit(images()).square().sum().backward()
    assert not revit.alpha.requires_grad and revit.alpha.grad is None
    trained = sum(parameter.numel() for parameter in revit.parameters() if parameter.requires_grad)
    assert trained == sum(parameter.numel() for parameter in VisionTransformer(**TINY).parameters())


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_alpha_outside_zero_one_is_refused(alpha):
    message = rf"^ReViT: alpha \(α\) = {alpha} is outside the allowed range \[0, 1\]\.$"
    with pytest.raises(ConfigError, match=message):
        ReViT(**TINY, alpha=alpha)


def test_alpha_is_exempt_from_weight_decay_with_the_vits_tokens():
    assert ReViT(**TINY).no_weight_decay() == {"pos_embed", "cls_token", "alpha"}


def test_a_block_given_a_residual_but_no_alpha_keeps_its_own_logits():
    """α defaults to 1 in the block: S_l = 1·S_l + 0·R, whatever R is."""
    block = spread(ReViT(**TINY)).blocks[1]
    tokens = torch.randn(2, 17, 24, generator=torch.Generator().manual_seed(3))
    residual = torch.randn(2, 3, 17, 17, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        q, k, _ = block.attn.split_heads(block.norm1(tokens))
        _, logits, _ = block(tokens, residual)
    torch.testing.assert_close(logits, (q @ k.transpose(-2, -1)) * block.attn.scale)


def test_small_preset_is_the_small_vit_plus_alpha():
    width, hidden, tokens, depth = 192, 384, 64, 9  # D 192, MLP ×2, 32×32 images in 4×4 patches
    block = 2 * 2 * width + (width * 3 * width + 3 * width) + (width * width + width) + (width * hidden + hidden)
    block += hidden * width + width
    embedding = 4 * 4 * 3 * width + width + width + (tokens + 1) * width  # patches, class token, positions
    head = 2 * width + width * 10 + 10
    assert count_parameters(revit_small()).trainable == embedding + depth * block + head + 1  # + α


@pytest.mark.parametrize("model_class", [VisionTransformer, ReViT])
def test_attention_maps_have_one_distribution_per_query(model_class):
    model = spread(model_class(**TINY))
    with torch.no_grad():
        maps = attention_maps(model, images(count=2))
    assert maps.shape == (3, 2, 3, 17, 17)  # (L, B, heads, T+1, T+1)
    assert (maps >= 0).all()  # with the sums below: distributions; the values: test_vit_maps_are_the_ones_...
    torch.testing.assert_close(maps.sum(dim=-1), torch.ones(3, 2, 3, 17))


def test_vit_maps_are_the_ones_its_forward_uses():
    """Rebuild each block's output from the recorded map: equal to the block's own forward."""
    vit = spread(VisionTransformer(**TINY))
    with torch.no_grad():
        maps = attention_maps(vit, images())
        tokens = vit.tokens(images())
        for block, weights in zip(vit.blocks, maps, strict=True):
            _, _, v = block.attn.split_heads(block.norm1(tokens))
            rebuilt = tokens + block.attn.merge_heads(weights @ v)
            rebuilt = rebuilt + block.mlp(block.norm2(rebuilt))
            tokens = block(tokens)
            torch.testing.assert_close(rebuilt, tokens, rtol=1e-5, atol=1e-5)


def test_identical_maps_have_similarity_one():
    single = torch.rand(2, 3, 5, 5).softmax(dim=-1)
    maps = single.expand(4, -1, -1, -1, -1)
    torch.testing.assert_close(cross_layer_similarity(maps), torch.ones(3))
    assert mean_cross_layer_similarity(maps) == pytest.approx(1.0)


def test_uniform_against_one_hot_attention_has_similarity_one_over_root_n():
    tokens = 9
    uniform = torch.full((1, 1, tokens, tokens), 1 / tokens)
    one_hot = torch.eye(tokens).view(1, 1, tokens, tokens)
    maps = torch.stack([uniform, one_hot])
    assert cross_layer_similarity(maps).item() == pytest.approx(1 / math.sqrt(tokens))


def test_a_model_without_readable_attention_is_refused_by_name():
    with pytest.raises(TypeError) as error:
        attention_maps(torch.nn.Linear(4, 4), images())
    assert str(error.value) == (
        "attention_maps: Linear has no attention_maps(images) method and is not the baseline VisionTransformer, "
        "whose blocks this function knows how to read."
    )


def test_the_similarities_refuse_maps_of_the_wrong_shape_or_too_few_blocks():
    with pytest.raises(ValueError) as error:
        cross_layer_similarity(torch.ones(2, 3, 4, 4))
    assert str(error.value) == "cross_layer_similarity: expected maps of shape (L, B, H, N, N), got (2, 3, 4, 4)."
    one_block = torch.full((1, 3, 2, 4, 4), 0.25)  # 3 images, so the batch is not taken for the blocks
    with pytest.raises(ValueError) as error:
        mean_cross_layer_similarity(one_block)
    assert str(error.value) == "mean_cross_layer_similarity: needs at least 2 blocks' maps, got 1."
    assert mean_cross_layer_similarity(one_block.expand(2, -1, -1, -1, -1)) == pytest.approx(1.0)  # 2 suffice


def test_revit_piece_trains_and_logs_the_learned_alpha(tmp_path, monkeypatch):
    write_mnist(tmp_path / "data", train=120, test=40)
    monkeypatch.chdir(tmp_path)
    tiny = ["--model.backbone.init_args.embed_dim", "16", "--model.backbone.init_args.num_heads", "2"]
    main(
        [
            "fit",
            *("-c", str(CONFIGS / "vir.yaml"), "-c", str(CONFIGS / "model" / "revit.yaml")),
            *("-c", str(CONFIGS / "depth" / "3.yaml")),
            *tiny,
            *QUICK_TRAINER,
            *("--trainer.limit_train_batches", "2", "--data.init_args.download", "false"),
        ]
    )
    run = tmp_path / "logs" / "revit-mnist" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()  # `callbacks+` appended: the default checkpointing stays
    events = EventAccumulator(str(run))
    events.Reload()
    logged = events.Scalars("backbone/alpha")
    assert len(logged) == 1 and logged[0].value != pytest.approx(0.5, abs=1e-6)  # α moved in training


def test_attention_command_compares_vit_and_revit_checkpoints(tmp_path, monkeypatch):
    from lit_vir.cli import main
    from tests.fakedata import write_mnist

    write_mnist(tmp_path / "data", train=100, test=20)
    monkeypatch.chdir(tmp_path)
    small = [
        "--model.backbone.init_args.embed_dim",
        "16",
        "--model.backbone.init_args.num_heads",
        "2",
        "--model.backbone.init_args.patch_size",
        "7",
        "--model.backbone.init_args.depth",
        "3",
        "--data.init_args.download",
        "false",
        *QUICK_TRAINER,
    ]
    for piece in ("vit_base", "revit"):
        main(["fit", "-c", str(CONFIGS / "vir.yaml"), "-c", str(CONFIGS / "model" / f"{piece}.yaml"), *small])
    checkpoints = [
        tmp_path / "logs" / name / "version_0" / "checkpoints" / "last.ckpt"
        for name in ("visiontransformer-mnist", "revit-mnist")
    ]
    for path in checkpoints:
        spread_blocks(path)
    main(["attention", *[item for path in checkpoints for item in ("--ckpt_path", str(path))], "--images", "8"])
    curves = json.loads((tmp_path / "attention" / "attention_similarity.json").read_text())
    assert sorted(name.split(" ")[0] for name in curves) == ["ReViT-3", "VisionTransformer-3"]
    # against the first 8 test images' maps computed here: the ViT's read from timm's twin of it (its unfused
    # attention's softmax), ReViT's from its own maps (checked against the mixing rule and timm above); the
    # cosines of consecutive blocks' rows in numpy
    data = datamodule_from_configs([checkpoints[0].parent.parent / "config.yaml"])
    data.setup("test")
    first = torch.stack([data.test_set[index][0] for index in range(8)])
    vit, revit = (load_classifier(path).backbone.eval() for path in checkpoints)
    with torch.no_grad():
        expected = {"VisionTransformer-3": timm_attention_maps(vit, first), "ReViT-3": revit.attention_maps(first)}
    for name, values in curves.items():
        maps = expected[name.split(" ")[0]].double().numpy()  # (L, B, H, T+1, T+1)
        earlier, later = maps[:-1], maps[1:]
        cosines = (earlier * later).sum(-1) / np.linalg.norm(earlier, axis=-1) / np.linalg.norm(later, axis=-1)
        assert values == pytest.approx(cosines.mean(axis=(1, 2, 3)).tolist(), rel=1e-5), name
    assert (tmp_path / "attention" / "attention_similarity.png").stat().st_size > 0


def spread_blocks(checkpoint: Path) -> None:
    """Move the blocks' weights in the checkpoint far from their near-zero initialisation: after three batches of
    training every attention map is nearly uniform, so the similarities are ≈ 1 for any images."""
    saved = torch.load(checkpoint, weights_only=False)
    generator = torch.Generator().manual_seed(0)
    for name, tensor in saved["state_dict"].items():
        if name.startswith("backbone.blocks.") and tensor.is_floating_point():
            tensor.add_(0.3 * torch.randn(tensor.shape, generator=generator))
    torch.save(saved, checkpoint)


def timm_attention_maps(vit: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """Every block's softmax attention (L, B, H, T+1, T+1) as timm's ViT with the same weights computes it: its
    unfused attention path, read at the attention dropout (identity in eval mode) that follows the softmax."""
    from tests.vit_oracle import timm_twin

    twin, maps = timm_twin(vit), []
    for block in twin.blocks:
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(lambda module, inputs, output: maps.append(output))
    twin(images)
    return torch.stack(maps)


# ------------------------------------------------------------------------------------- oracle: timm's ViT


@pytest.mark.parametrize("pooling", ["token", "mean"])
def test_alpha_one_equals_timms_vision_transformer_with_the_same_weights(pooling):
    """The official ReViT mixes S ← α·S + (1 − α)·R (model/attention.py), so α = 1 is the plain ViT."""
    from tests.vit_oracle import spread, timm_twin

    revit = spread(ReViT(**TINY, pooling=pooling, alpha=1.0))
    inputs = images().double()
    with torch.no_grad():
        torch.testing.assert_close(revit(inputs), timm_twin(revit)(inputs), rtol=0, atol=1e-10)


def test_alpha_zero_repeats_the_first_blocks_logits_in_every_block():
    """The other end of the official convention: at α = 0 every block attends with block 0's logits."""
    revit = spread(ReViT(**TINY, alpha=0.0))
    with torch.no_grad():
        maps = revit.attention_maps(images())
    for later in maps[1:]:
        torch.testing.assert_close(later, maps[0])


# ----------------------------------------------------------------------------------- presets (config pieces)


def test_revit_pieces_compose_on_the_vit_pieces():
    from lit_vir.cli import build_from_config

    pieces = ["vit_small", "revit", "revit_fixed_alpha", "revit_mean_pooling"]
    config = ["-c", str(CONFIGS / "vir.yaml"), "-c", str(CONFIGS / "data" / "digits.yaml")]
    model, _ = build_from_config(
        [*config, *(item for piece in pieces for item in ("-c", str(CONFIGS / "model" / f"{piece}.yaml")))]
    )
    revit = model.backbone
    assert type(revit) is ReViT and revit.pooling == "mean" and not revit.alpha.requires_grad
    assert revit.alpha.item() == 0.5 and revit.blocks[0].mlp.fc1.out_features == 2 * 192  # vit_small's widths
    assert [block.drop_path.p for block in revit.blocks][-1] == pytest.approx(0.2)
    learned, _ = build_from_config(
        [*config, "-c", str(CONFIGS / "model" / "vit_small.yaml"), "-c", str(CONFIGS / "model" / "revit.yaml")]
    )
    assert learned.backbone.alpha.requires_grad and learned.backbone.pooling == "token"


def test_revit_b_parameter_count_is_the_official_86m_plus_our_class_token():
    """The official ReViT-B (D 768, depth 12, 12 heads, patch 16 at 224 px, 1000 classes, no class token, one
    α) has 86,566,121 parameters (its README: 86M), counted by hand from its code below. Ours with mean pooling
    keeps a class token and its position: 2·768 more."""
    width, hidden, patches = 768, 3072, 196
    block = 2 * 2 * width + (width * 3 * width + 3 * width) + (width * width + width) + (width * hidden + hidden)
    block += hidden * width + width
    official = (16 * 16 * 3 * width + width) + patches * width + 12 * block + 2 * width + (width * 1000 + 1000) + 1
    assert official == 86_566_121
    revit = ReViT(1000, 224, 3, patch_size=16, embed_dim=768, depth=12, num_heads=12, pooling="mean")
    assert count_parameters(revit).trainable == official + 2 * width
