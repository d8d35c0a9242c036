"""ViT-Slim: soft masks on the ViT, the sparsity loss, the global ranking, the physically slim model and the
train → search → slim → fine-tune chain through the command line."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_vir.checks import ConfigError
from lit_vir.cli import main as lit_vir_main
from lit_vir.commands.common import datamodule_from_configs, run_config
from lit_vir.commands.common import test_batches as read_test_batches
from lit_vir.commands.slim import count_flops
from lit_vir.commands.slim import main as slim_main
from lit_vir.models import SearchableViT, SlimViT, VisionTransformer, count_parameters
from lit_vir.models.vit_slim import (
    SlimAttention,
    SlimBlock,
    apply_keep_masks,
    build_slim,
    keep_masks,
    slim,
    top_fraction,
)
from lit_vir.training import ImageClassifier
from lit_vir.training.checkpoints import CheckpointError, load_classifier
from lit_vir.training.slim import SlimSearch, WarmStart, backbone_weights
from tests.conftest import CONFIGS, QUICK_TRAINER
from tests.fakedata import write_mnist

TINY = dict(
    num_classes=5, image_size=16, in_channels=3, patch_size=4, embed_dim=24, depth=3, num_heads=3, mlp_ratio=2.0
)
DEPTH, HEADS, HEAD_DIM, HIDDEN, PATCHES = 3, 3, 8, 48, 16


def trained_vit(pooling: str = "token", seed: int = 0) -> VisionTransformer:
    """A ViT whose weights are far from the near-zero init (a stand-in for a trained one): O(1) logits."""
    vit = VisionTransformer(**TINY, pooling=pooling)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in vit.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))
    return vit.eval()


def images(count: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(count, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def distinct(shape: tuple[int, ...], low: float, high: float, seed: int) -> torch.Tensor:
    """Values with distinct magnitudes in [low, high], shuffled, random signs: a ranking without ties."""
    generator = torch.Generator().manual_seed(seed)
    count = math.prod(shape)
    magnitudes = torch.linspace(low, high, count)[torch.randperm(count, generator=generator)]
    signs = torch.where(torch.rand(count, generator=generator) < 0.3, -1.0, 1.0)
    return (magnitudes * signs).view(shape)


def searched(pooling: str = "token", attention_search: str = "channel", seed: int = 2) -> SearchableViT:
    """A search model with known, tie-free mask values, as if searched."""
    model = SearchableViT.from_vit(trained_vit(pooling), attention_search=attention_search).eval()
    with torch.no_grad():
        model.attention_mask.copy_(distinct(model.attention_mask.shape, 0.05, 1.5, seed))
        model.mlp_mask.copy_(distinct(model.mlp_mask.shape, 0.05, 1.5, seed + 1))
        model.token_logit.copy_(distinct(model.token_logit.shape, 0.05, 2.5, seed + 2))
    return model


def kept_by_threshold(values: list[float], budget: float) -> float:
    """The smallest |value| among the top round(budget·n) — computed by sorting, apart from the code under test."""
    ordered = sorted((abs(value) for value in values), reverse=True)
    return ordered[math.floor(budget * len(ordered) + 0.5) - 1]


# ---------------------------------------------------------------------------------------------- search model


@pytest.mark.parametrize("pooling", ["token", "mean"])
def test_all_masks_at_one_equal_the_vit(pooling):
    vit = trained_vit(pooling)
    search = SearchableViT.from_vit(vit).eval()
    with torch.no_grad():
        search.token_logit.fill_(20.0)  # tanh(20) is 1 in float32
        torch.testing.assert_close(search(images()), vit(images()), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("attention_search", "shape"),
    [("channel", (DEPTH, HEADS, HEAD_DIM)), ("head", (DEPTH, HEADS, 1)), ("head_dim", (DEPTH, 1, HEAD_DIM))],
)
def test_masks_start_near_one_in_their_shapes(attention_search, shape):
    search = SearchableViT.from_vit(trained_vit(), attention_search=attention_search)
    assert search.attention_mask.shape == shape and (search.attention_mask == 1).all()
    assert search.mlp_mask.shape == (DEPTH, HIDDEN) and (search.mlp_mask == 1).all()
    assert search.token_mask.shape == (DEPTH, PATCHES + 1)
    torch.testing.assert_close(search.token_mask, torch.full((DEPTH, PATCHES + 1), math.tanh(3.0)))


def test_sparsity_loss_is_the_weighted_sum_of_absolute_masks():
    search = SearchableViT(**TINY, attention_l1=1e-4, mlp_l1=2e-3, token_l1=3e-2)
    with torch.no_grad():
        for parameter in (search.attention_mask, search.mlp_mask, search.token_logit):
            parameter.uniform_(-2, 2)
    attention = sum(abs(value) for value in search.attention_mask.flatten().tolist())
    mlp = sum(abs(value) for value in search.mlp_mask.flatten().tolist())
    tokens = sum(abs(math.tanh(value)) for value in search.token_logit.flatten().tolist())
    expected = 1e-4 * attention + 2e-3 * mlp + 3e-2 * tokens
    assert search.sparsity_loss().item() == pytest.approx(expected, rel=1e-5)


def test_a_trained_vit_of_another_shape_is_refused():
    other = VisionTransformer(**(TINY | {"embed_dim": 30}))
    with pytest.raises(ConfigError, match="do not fit this architecture"):
        SearchableViT(**TINY).load_vit_weights(other.state_dict())


# ------------------------------------------------------------------------------------------------- slimming


@pytest.mark.parametrize("budget", [0.3, 0.5, 0.8])
def test_channel_search_keeps_the_global_top_fraction(budget):
    search = searched(attention_search="channel")
    slimmed = slim(search, budget)
    threshold = kept_by_threshold(search.attention_mask.flatten().tolist(), budget)
    for block, layer in zip(slimmed.blocks, search.attention_mask.abs().tolist(), strict=True):
        widths = [sum(value >= threshold for value in head) for head in layer]
        assert block.attn.head_widths == sorted((width for width in widths if width > 0), reverse=True)
    threshold = kept_by_threshold(search.mlp_mask.flatten().tolist(), budget)
    expected_units = [sum(abs(value) >= threshold for value in layer) for layer in search.mlp_mask.tolist()]
    assert [block.mlp.fc1.out_features for block in slimmed.blocks] == expected_units


@pytest.mark.parametrize("budget", [0.3, 0.6])
def test_head_search_keeps_whole_heads_by_global_rank(budget):
    search = searched(attention_search="head")
    slimmed = slim(search, budget)
    threshold = kept_by_threshold(search.attention_mask.flatten().tolist(), budget)
    expected = [sum(abs(value) >= threshold for value in layer) for layer in search.attention_mask.flatten(1).tolist()]
    assert [block.attn.head_widths for block in slimmed.blocks] == [[HEAD_DIM] * heads for heads in expected]


def test_head_dim_search_gives_every_head_of_a_block_the_same_width():
    search = searched(attention_search="head_dim")
    slimmed = slim(search, 0.5)
    threshold = kept_by_threshold(search.attention_mask.flatten().tolist(), 0.5)
    widths = [sum(abs(value) >= threshold for value in layer) for layer in search.attention_mask.flatten(1).tolist()]
    assert [block.attn.head_widths for block in slimmed.blocks] == [[w] * HEADS if w else [] for w in widths]


@pytest.mark.parametrize("budget", [0.25, 0.5])
def test_tokens_follow_the_global_rank_made_monotone(budget):
    search = searched()
    slimmed = slim(search, budget)
    patch_masks = [[math.tanh(value) for value in layer[1:]] for layer in search.token_logit.tolist()]
    threshold = kept_by_threshold([value for layer in patch_masks for value in layer], budget)
    ranked = [[abs(value) >= threshold for value in layer] for layer in patch_masks]
    monotone = [
        [any(ranked[later][j] for later in range(depth, DEPTH)) for j in range(PATCHES)] for depth in range(DEPTH)
    ]
    assert [block.num_tokens for block in slimmed.blocks] == [1 + sum(layer) for layer in monotone]
    assert any(monotone[0][j] and not ranked[0][j] for j in range(PATCHES))  # monotonicity added tokens here


def test_token_keep_masks_are_monotone_with_the_class_token_always_kept():
    keep = keep_masks(searched(), 0.3).tokens
    assert keep[:, 0].all()
    assert (keep[:-1] >= keep[1:]).all()  # kept at block l+1 ⇒ kept at block l


@pytest.mark.parametrize("attention_search", ["channel", "head", "head_dim"])
@pytest.mark.parametrize("pooling", ["token", "mean"])
@pytest.mark.parametrize("budget", [0.3, 0.6])
def test_slim_logits_equal_the_masked_model_with_binary_masks(attention_search, pooling, budget):
    search = searched(pooling, attention_search)
    keep = keep_masks(search, budget)
    slimmed = build_slim(search, keep)
    with torch.no_grad():
        reference = apply_keep_masks(search, keep)(images())
        torch.testing.assert_close(slimmed(images()), reference, rtol=0, atol=1e-5)
        assert (reference - search(images())).abs().max() > 1e-3  # the pruning did change the network
    assert count_parameters(slimmed).trainable < count_parameters(search).trainable - search.attention_mask.numel()


def test_a_block_pruned_to_nothing_keeps_only_its_biases():
    search = searched()
    with torch.no_grad():
        search.attention_mask[1] *= 1e-3  # block 1's masks rank last
        search.mlp_mask[1] *= 1e-3
    keep = keep_masks(search, 0.5)
    slimmed = build_slim(search, keep)
    assert slimmed.blocks[1].attn.head_widths == [] and slimmed.blocks[1].mlp.fc1.out_features == 0
    with torch.no_grad():
        torch.testing.assert_close(slimmed(images()), apply_keep_masks(search, keep)(images()), rtol=0, atol=1e-5)


def test_slim_model_is_smaller_and_cheaper():
    search = searched()
    full, half = slim(search, 1.0), slim(search, 0.5)
    assert count_parameters(full).trainable == count_parameters(trained_vit()).trainable
    # by hand: half of the 72 attention channels (each a row of q, k, v with its 3 biases and a column of the
    # projection: 3·24 + 3 + 24), half of the 144 hidden units (24 + 1 + 24) and the positions of the tokens no block
    # reads any more (24 each) are gone
    unread = PATCHES + 1 - int(keep_masks(search, 0.5).tokens[0].sum())
    removed = 36 * (3 * 24 + 3 + 24) + 72 * (24 + 1 + 24) + unread * 24
    assert count_parameters(full).trainable - count_parameters(half).trainable == removed
    assert count_flops(half, images(1)) < 0.75 * count_flops(full, images(1))  # a claim; no count by hand


def test_slim_model_is_rebuilt_from_plain_data_and_weights_only(tmp_path):
    slimmed = slim(searched(pooling="mean"), 0.5)
    init_args = json.loads(json.dumps(slimmed.init_args))  # plain data: survives JSON
    torch.save(slimmed.state_dict(), tmp_path / "weights.pt")
    rebuilt = SlimViT(**init_args).eval()
    rebuilt.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(images()), slimmed(images()), rtol=0, atol=0)


def test_budget_outside_zero_one_is_refused():
    with pytest.raises(ConfigError, match=r"token budget = 1\.5"):
        keep_masks(searched(), 0.5, token_budget=1.5)


# --------------------------------------------------------------------------------------------- Lightning side


def test_search_loss_adds_the_sparsity_term_to_the_cross_entropy():
    search = searched()
    module = SlimSearch(search, num_classes=5).train()
    batch = (images(), torch.tensor([0, 1, 2, 3]))
    with pytest.warns(UserWarning, match="self.log"):  # no trainer attached here
        loss, _, _ = module.model_step(batch)
    expected = F.cross_entropy(search(batch[0]), batch[1]) + search.sparsity_loss()
    torch.testing.assert_close(loss, expected)
    module.eval()
    evaluated, _, _ = module.model_step(batch)
    torch.testing.assert_close(evaluated, F.cross_entropy(search(batch[0]), batch[1]))


def test_masks_only_trains_nothing_but_the_masks():
    module = SlimSearch(SearchableViT(**TINY), masks_only=True)
    trainable = [name for name, parameter in module.named_parameters() if parameter.requires_grad]
    assert sorted(trainable) == ["backbone.attention_mask", "backbone.mlp_mask", "backbone.token_logit"]


def test_search_needs_a_searchable_backbone():
    with pytest.raises(ConfigError, match="SearchableViT"):
        SlimSearch(VisionTransformer(**TINY))


def test_init_from_copies_the_trained_vit_and_leaves_the_masks(tmp_path):
    vit = trained_vit()
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in vit.state_dict().items()}}, tmp_path / "vit.ckpt")
    module = SlimSearch(SearchableViT(**TINY), init_from=str(tmp_path / "vit.ckpt"))
    module.load_initial_weights()
    search = module.backbone.eval()
    assert (search.attention_mask == 1).all() and (search.mlp_mask == 1).all()
    with torch.no_grad():
        search.token_logit.fill_(20.0)
        torch.testing.assert_close(search(images()), vit(images()), rtol=1e-5, atol=1e-5)


def test_warm_start_loads_a_new_run_and_leaves_a_resumed_one(tmp_path):
    source = slim(searched(), 0.5)
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "s.ckpt")
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.ckpt_path = "run/last.ckpt"  # what `fit(ckpt_path=...)` sets before the callbacks' on_fit_start
    resumed = ImageClassifier(SlimViT(**source.init_args), num_classes=5)
    WarmStart(str(tmp_path / "s.ckpt")).on_fit_start(trainer, resumed)
    assert not torch.equal(resumed.backbone.head.weight, source.head.weight)
    trainer.ckpt_path = None
    fresh = ImageClassifier(SlimViT(**source.init_args), num_classes=5)
    WarmStart(str(tmp_path / "s.ckpt")).on_fit_start(trainer, fresh)
    for name, value in source.state_dict().items():
        assert torch.equal(fresh.backbone.state_dict()[name], value), name


def test_slim_command_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        slim_main(["--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    assert "examples:" in shown and "--budget" in shown and "lit-vir fit" in shown


# ------------------------------------------------------------------------------------- the chain, end to end

TINY_VIT = [
    *("-c", str(CONFIGS / "vir.yaml"), "-c", str(CONFIGS / "model" / "vit_base.yaml")),
    *("--model.backbone.init_args.embed_dim", "16", "--model.backbone.init_args.num_heads", "2"),
    *("--model.backbone.init_args.depth", "2", "--model.backbone.init_args.mlp_ratio", "2.0"),
]
QUICK = [*QUICK_TRAINER, "--trainer.limit_train_batches", "2", "--data.init_args.download", "false"]


def test_train_search_slim_finetune_through_the_command_line(tmp_path, monkeypatch, capsys):
    write_mnist(tmp_path / "data", train=120, test=40)
    monkeypatch.chdir(tmp_path)
    lit_vir_main(["fit", *TINY_VIT, *QUICK])
    vit_checkpoint = tmp_path / "logs" / "visiontransformer-mnist" / "version_0" / "checkpoints" / "last.ckpt"

    search_args = ["-c", str(CONFIGS / "slim" / "search.yaml"), "--model.init_from", str(vit_checkpoint)]
    lit_vir_main(["fit", *TINY_VIT, *search_args, *QUICK, "--trainer.log_every_n_steps", "1"])
    search_run = tmp_path / "logs" / "searchablevit-mnist" / "version_0"
    events = EventAccumulator(str(search_run))
    events.Reload()
    assert {"masks/attention", "masks/mlp", "masks/token"} <= set(events.Tags()["histograms"])
    assert {"masks/token_sparsity", "masks/mlp_mean", "train/sparsity_loss"} <= set(events.Tags()["scalars"])

    capsys.readouterr()
    slim_main([str(search_run / "checkpoints" / "last.ckpt"), "--budget", "0.5", "--batch-size", "4", "--repeats", "2"])
    shown = capsys.readouterr().out
    assert "Δlogit" in shown and "0.50" in shown
    report = json.loads((tmp_path / "slim" / "slim.json").read_text())
    (row,) = report["budgets"]
    assert row["max_logit_difference"] < 1e-5 and row["params"] < report["full"]["params"]
    for measured in (report["full"], row):  # speed-ups against the plain ViT, not the budget-1 slim model
        assert measured["speedup"] == pytest.approx(
            measured["images_per_second"] / report["plain_vit_images_per_second"]
        )
    search = load_classifier(search_run / "checkpoints" / "last.ckpt").backbone.eval()
    batches = read_test_batches(datamodule_from_configs([run_config(search_run / "checkpoints" / "last.ckpt")]))
    for model, reported in ((search, report["full"]["accuracy"]), (slim(search, 0.5), row["accuracy"])):
        with torch.no_grad():
            right = sum((model(inputs).argmax(dim=1) == labels).sum().item() for inputs, labels in batches)
        assert reported == pytest.approx(right / sum(len(labels) for _, labels in batches), abs=1e-9)
    original = ["--original", "--report-only", "--no-accuracy", "--json", str(tmp_path / "original.json")]
    slim_main([str(search_run / "checkpoints" / "last.ckpt"), "--budget", "0.5", "--repeats", "1", *original])
    (binary,) = json.loads((tmp_path / "original.json").read_text())["budgets"]
    assert binary["max_logit_difference"] < 1e-5  # the slim model is its binary-masked model
    piece = tmp_path / "slim" / "slim-b0.50.yaml"
    widths = yaml.safe_load(piece.read_text())["model"]["init_args"]["backbone"]["init_args"]
    assert widths["mlp_widths"] == row["mlp_units"] and widths["token_counts"] == row["tokens"]

    as_slimmed = load_classifier(tmp_path / "slim" / "slim-b0.50.ckpt").backbone
    assert isinstance(as_slimmed, SlimViT) and as_slimmed.init_args.items() >= widths.items()

    lit_vir_main(["fit", "-c", str(CONFIGS / "vir.yaml"), "-c", str(piece), *QUICK])
    final = tmp_path / "logs" / "slimvit-mnist" / "version_0" / "checkpoints" / "last.ckpt"
    loader = (
        "import sys, json; from lit_vir.training.checkpoints import load_classifier; "
        "model = load_classifier(sys.argv[1]).backbone; "
        "print(json.dumps([type(model).__name__, model.init_args['mlp_widths'], model.init_args['token_counts']]))"
    )
    loaded = subprocess.run([sys.executable, "-c", loader, str(final)], capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout.splitlines()[-1]) == ["SlimViT", row["mlp_units"], row["tokens"]]


# ------------------------------------------------------------------------------- oracles: timm, by hand


@pytest.mark.parametrize("pooling", ["token", "mean"])
def test_search_model_with_all_masks_one_and_slim_at_budget_one_equal_timms_vit(pooling):
    from tests.vit_oracle import spread, timm_twin

    search = spread(SearchableViT(**TINY, pooling=pooling))
    with torch.no_grad():
        search.token_logit.fill_(20.0)  # tanh(20) is 1.0 in float64
    inputs = images().double()
    with torch.no_grad():
        reference = timm_twin(search)(inputs)
        torch.testing.assert_close(search(inputs), reference, rtol=0, atol=1e-10)
        torch.testing.assert_close(slim(search, 1.0)(inputs), reference, rtol=0, atol=1e-10)


def test_each_mask_multiplies_the_tensor_the_paper_names():
    """One masked block against its equations written out with einsum, float64, masks all different:
    x̃ = LN₁(x)·ζ_tok;  q, k, v = (x̃ W_qkv + b)·ζ_attn per head channel;  a_ij ∝ |ζ_tok,j|·exp(q_i·k_j/√d);
    x' = x + (a v) W_proj + b;  x'' = x' + GELU(LN₂(x')·ζ_tok W₁ + b₁)·ζ_mlp W₂ + b₂."""
    torch.manual_seed(3)
    tokens_in, dim, heads, head_dim, hidden = 5, 6, 2, 3, 9  # 2×2 image in 1×1 patches: 4 + class token
    search = SearchableViT(
        num_classes=2,
        image_size=2,
        in_channels=1,
        patch_size=1,
        embed_dim=dim,
        depth=1,
        num_heads=heads,
        mlp_ratio=hidden / dim,
    ).double()
    block = search.blocks[0]
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.copy_(torch.randn(parameter.shape, dtype=torch.float64))
        search.attention_mask.copy_(torch.rand(1, heads, head_dim, dtype=torch.float64) + 0.2)
        search.mlp_mask.copy_(torch.rand(1, hidden, dtype=torch.float64) + 0.2)
        search.token_logit.copy_(torch.tensor([[0.3, 1.2, -0.8, 2.0, 0.6]], dtype=torch.float64))
    x = torch.randn(2, tokens_in, dim, dtype=torch.float64)
    zeta_attn, zeta_mlp, zeta_tok = search.attention_mask[0], search.mlp_mask[0], torch.tanh(search.token_logit[0])

    def layer_norm(values, norm):
        centred = values - values.mean(-1, keepdim=True)
        return centred / torch.sqrt(centred.square().mean(-1, keepdim=True) + norm.eps) * norm.weight + norm.bias

    masked_in = layer_norm(x, block.norm1) * zeta_tok[:, None]
    qkv = (masked_in @ block.attn.qkv.weight.T + block.attn.qkv.bias).view(2, tokens_in, 3, heads, head_dim)
    q, k, v = (qkv[:, :, part] * zeta_attn for part in range(3))  # (B, T, H, d)
    logits = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(head_dim)
    weights = zeta_tok.abs() * logits.exp()
    weights = weights / weights.sum(-1, keepdim=True)
    attended = torch.einsum("bhij,bjhd->bihd", weights, v).reshape(2, tokens_in, dim)
    middle = x + attended @ block.attn.proj.weight.T + block.attn.proj.bias
    mlp = block.mlp
    units = F.gelu(layer_norm(middle, block.norm2) * zeta_tok[:, None] @ mlp.fc1.weight.T + mlp.fc1.bias) * zeta_mlp
    expected = middle + units @ mlp.fc2.weight.T + mlp.fc2.bias
    with torch.no_grad():
        got = block(x, zeta_attn, zeta_mlp, zeta_tok)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


# -------------------------------------------------------------------- the original code's slimming, as options


def test_binarized_slim_model_is_the_trained_vit_restricted_to_what_survives():
    """`binarize` (the original's searched_zeta = ζ ≥ threshold): kept ζ count as 1, so the slim weights are the
    ViT's own rows and columns, and the logits are those of the masks set to exactly 1 and 0."""
    search = searched()
    keep = keep_masks(search, 0.5)
    slimmed = build_slim(search, keep, binarize=True)
    binary = copy.deepcopy(search)
    with torch.no_grad():
        binary.attention_mask.copy_(keep.attention.double())
        binary.mlp_mask.copy_(keep.mlp.double())
        binary.token_logit.copy_(torch.where(keep.tokens, 20.0, 0.0))
        torch.testing.assert_close(slimmed(images()), binary(images()), rtol=0, atol=1e-5)
        assert (slimmed(images()) - slim(search, 0.5)(images())).abs().max() > 1e-3  # soft folding differs
    units = keep.mlp[1].nonzero().squeeze(1)
    assert torch.equal(slimmed.blocks[1].mlp.fc2.weight, search.blocks[1].mlp.fc2.weight[:, units])
    assert set(slimmed.blocks[1].token_scale.tolist()) == {1.0}


def test_signed_ranking_prunes_a_strongly_negative_zeta_that_magnitude_ranking_keeps():
    search = searched()
    with torch.no_grad():
        search.mlp_mask.copy_(torch.linspace(0.1, 0.9, search.mlp_mask.numel()).view_as(search.mlp_mask))
        search.mlp_mask[0, 0] = -1.2  # the largest |ζ| of all, and the smallest ζ
    by_magnitude = keep_masks(search, 0.5).mlp
    signed = keep_masks(search, 0.5, ranking="signed").mlp
    assert by_magnitude[0, 0] and not signed[0, 0]
    assert by_magnitude.sum() == signed.sum() == round(0.5 * search.mlp_mask.numel())
    ordered = sorted(search.mlp_mask.flatten().tolist())  # the original: sorted(zetas), keep ζ ≥ threshold
    threshold = ordered[int((1 - 0.5) * len(ordered))]
    assert signed.flatten().tolist() == [value >= threshold for value in search.mlp_mask.flatten().tolist()]


def test_a_ranked_class_token_can_be_pruned_and_the_slim_model_still_matches_the_masked_one():
    search = searched()
    with torch.no_grad():
        search.token_logit[0, 0] = 3.0  # the class token ranks first in block 0
        search.token_logit[1:, 0] = 0.01  # and last in blocks 1 and 2
    assert keep_masks(search, 0.5).tokens[:, 0].all()  # default: always kept
    keep = keep_masks(search, 0.5, rank_class_token=True)
    assert keep.tokens[:, 0].tolist() == [True, False, False]
    for binarize in (False, True):
        slimmed = build_slim(search, keep, binarize)
        assert [block.token_scale[0].item() for block in slimmed.blocks][1:] == [0.0, 0.0]  # in the sequence, unread
        with torch.no_grad():
            reference = apply_keep_masks(search, keep, binarize)(images())
            torch.testing.assert_close(slimmed(images()), reference, rtol=0, atol=1e-5)


def test_masks_only_with_train_norms_trains_the_masks_and_the_layer_norms():
    """The original's --freeze_weights keeps parameters named "zeta" or "norm" trainable."""
    module = SlimSearch(SearchableViT(**TINY), masks_only=True, train_norms=True)
    trainable = {name.removeprefix("backbone.") for name, p in module.named_parameters() if p.requires_grad}
    norms = {
        f"blocks.{i}.{norm}.{kind}" for i in range(DEPTH) for norm in ("norm1", "norm2") for kind in ("weight", "bias")
    }
    assert trainable == {"attention_mask", "mlp_mask", "token_logit", "norm.weight", "norm.bias"} | norms


def test_slim_recipes_compose_on_the_search_and_the_slim_pieces():
    from lit_vir.cli import build_from_config

    pieces = [CONFIGS / "vir.yaml", CONFIGS / "data" / "digits.yaml", CONFIGS / "model" / "vit_small.yaml"]
    pieces += [CONFIGS / "slim" / "search.yaml", CONFIGS / "slim" / "search_recipe.yaml"]
    module, _ = build_from_config([item for piece in pieces for item in ("-c", str(piece))])
    assert isinstance(module, SlimSearch) and module.hparams.label_smoothing == 0.1
    assert module.backbone.blocks[-1].drop_path.p == pytest.approx(0.1)


# ------------------------------------------------------------------------------- the search phase in a real fit


def vit_checkpoint(path, vit: VisionTransformer):
    """The backbone entries of a lit-vir checkpoint, as phase 1 writes them."""
    torch.save({"state_dict": {f"backbone.{name}": value for name, value in vit.state_dict().items()}}, path)
    return path


def random_images(count: int = 16) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(5)
    data = torch.utils.data.TensorDataset(
        torch.randn(count, 3, 16, 16, generator=generator), torch.randint(0, 5, (count,), generator=generator)
    )
    return torch.utils.data.DataLoader(data, batch_size=4)


def test_a_search_fit_starts_from_init_from_and_logs_its_loss_parts_and_masks_per_epoch(tmp_path, caplog):
    """2 epochs of 4 steps: the ViT's weights are copied in at fit start (said in the log), the epoch means of the
    two loss parts add up to the logged train/loss, and each mask type's sparsity, mean and histogram are those of
    the masks the fit ends with."""
    import logging

    from lightning.pytorch.loggers import TensorBoardLogger

    vit = trained_vit()
    path = vit_checkpoint(tmp_path / "vit.ckpt", vit)
    module = SlimSearch(SearchableViT(**TINY), init_from=str(path), num_classes=5, sparsity_threshold=0.9)
    started = {}

    class Copied(L.Callback):  # the backbone as the first step sees it
        def on_train_start(self, trainer, pl_module):
            started.update({name: value.clone() for name, value in pl_module.backbone.state_dict().items()})

    logger = TensorBoardLogger(tmp_path, name="search")
    trainer = L.Trainer(max_epochs=2, logger=logger, callbacks=[Copied()], enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="lit_vir.training.slim"):
        trainer.fit(module, random_images())
    assert f"search starts from the ViT weights of {path}" in [record.getMessage() for record in caplog.records]
    assert module.initialised is True
    for name, value in vit.state_dict().items():
        assert torch.equal(started[name], value), name
    assert all((started[name] == 1).all() for name in ("attention_mask", "mlp_mask"))

    events = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert not {"train/cross_entropy_step", "train/sparsity_loss_step"} & set(scalars)  # epoch means only
    parts = [events.Scalars(f"train/{name}") for name in ("cross_entropy", "sparsity_loss")]
    totals = events.Scalars("train/loss_epoch")
    assert [len(part) for part in parts] == [2, 2] and len(totals) == 2
    for cross_entropy, sparsity, total in zip(*parts, totals, strict=True):
        assert cross_entropy.value + sparsity.value == pytest.approx(total.value, rel=1e-5)
    for kind, values in module.backbone.masks().items():
        magnitudes = values.detach().abs()
        assert events.Scalars(f"masks/{kind}_sparsity")[-1].value == pytest.approx(
            (magnitudes < 0.9).float().mean().item(), abs=1e-7
        )
        assert events.Scalars(f"masks/{kind}_mean")[-1].value == pytest.approx(magnitudes.mean().item(), rel=1e-6)
        histograms = events.Histograms(f"masks/{kind}")
        assert [histogram.step for histogram in histograms] == [4, 8]
        assert histograms[-1].histogram_value.num == magnitudes.numel()
        assert histograms[-1].histogram_value.sum == pytest.approx(values.detach().sum().item(), rel=1e-5, abs=1e-6)


def test_the_search_is_initialised_once_and_never_over_a_resumed_run(tmp_path):
    vit = trained_vit()
    module = SlimSearch(SearchableViT(**TINY), init_from=str(vit_checkpoint(tmp_path / "vit.ckpt", vit)))
    module.trainer = L.Trainer(logger=False, enable_progress_bar=False)
    module.trainer.ckpt_path = "run/last.ckpt"  # a resumed run keeps the weights it resumes
    module.on_fit_start()
    assert not module.initialised and not torch.equal(module.backbone.head.weight, vit.head.weight)
    module.trainer.ckpt_path = None
    module.on_fit_start()
    assert module.initialised and torch.equal(module.backbone.head.weight, vit.head.weight)
    with torch.no_grad():
        module.backbone.head.weight.add_(1.0)  # as training would change it
    module.on_fit_start()  # a second fit of the same module does not go back to the ViT
    assert torch.equal(module.backbone.head.weight, vit.head.weight + 1.0)


def test_a_search_without_init_from_warns_where_its_weights_come_from():
    module = SlimSearch(SearchableViT(**TINY))
    module.trainer = L.Trainer(logger=False, enable_progress_bar=False)
    with pytest.warns(UserWarning) as caught:
        module.on_fit_start()
    assert [str(warning.message) for warning in caught if "SlimSearch" in str(warning.message)] == [
        "SlimSearch: no init_from, so the search starts from the backbone's current weights: right for a backbone "
        "built with SearchableViT.from_vit; from a config, name the phase-1 checkpoint with --model.init_from."
    ]


def test_the_search_options_defaults_and_refusals_word_for_word(tmp_path):
    module = SlimSearch(SearchableViT(**TINY))
    assert module.sparsity_threshold == 0.1 and not module.initialised
    assert all(parameter.requires_grad for parameter in module.parameters())  # weights and masks jointly
    SlimSearch(SearchableViT(**TINY), sparsity_threshold=1e-9)  # any positive threshold
    with pytest.raises(ConfigError) as error:
        SlimSearch(SearchableViT(**TINY), sparsity_threshold=0)
    assert str(error.value) == "SlimSearch: sparsity_threshold = 0 is outside the allowed range (0, inf)."
    with pytest.raises(ConfigError) as error:
        SlimSearch(VisionTransformer(**TINY))
    assert str(error.value) == (
        "SlimSearch: the backbone must be a lit_vir.models.SearchableViT, got VisionTransformer; compose "
        "configs/slim/search.yaml after the model piece the ViT was trained with."
    )
    other = VisionTransformer(**{**TINY, "embed_dim": 12})
    path = vit_checkpoint(tmp_path / "other.ckpt", other)
    with pytest.raises(ConfigError) as reason:
        SearchableViT(**TINY).load_vit_weights(other.state_dict())
    with pytest.raises(CheckpointError) as error:
        SlimSearch(SearchableViT(**TINY), init_from=str(path)).load_initial_weights()
    assert str(error.value) == f"{path}: {reason.value}"
    torch.save({"state_dict": {"head.weight": torch.ones(1)}}, tmp_path / "bare.ckpt")
    with pytest.raises(CheckpointError) as error:
        backbone_weights(tmp_path / "bare.ckpt")
    assert str(error.value) == (
        f"{tmp_path / 'bare.ckpt'}: holds no backbone weights (no 'backbone.*' entries); not a lit-vir checkpoint."
    )


def test_the_search_loss_takes_the_mixed_soft_targets():
    search = searched()
    module = SlimSearch(search, num_classes=5).train()
    batch = (images(), torch.tensor([0, 1, 2, 3]))
    targets = torch.softmax(torch.randn(4, 5, generator=torch.Generator().manual_seed(9)), dim=1)  # as MixUp makes
    with pytest.warns(UserWarning, match="self.log"):  # no trainer attached here
        loss, _, _ = module.model_step(batch, targets)
    soft = -(targets * torch.log_softmax(search(batch[0]), dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(loss, soft + search.sparsity_loss())


def test_warm_start_refuses_weights_of_another_shape_and_applies_once(tmp_path, caplog):
    import logging

    source = slim(searched(), 0.5)
    path = tmp_path / "s.ckpt"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in source.state_dict().items()}}, path)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    wrong = ImageClassifier(VisionTransformer(**TINY), num_classes=5)
    with pytest.raises(RuntimeError) as reason:
        wrong.backbone.load_state_dict({k: v for k, v in source.state_dict().items()})
    with pytest.raises(CheckpointError) as error:
        WarmStart(str(path)).on_fit_start(trainer, wrong)
    assert str(error.value) == (
        f"{path}: its backbone weights do not fit the configured VisionTransformer "
        f"({str(reason.value).splitlines()[-1].strip()}). Compose the config piece written next to this checkpoint, "
        "with the dataset the model was slimmed on."
    )
    module = ImageClassifier(SlimViT(**source.init_args), num_classes=5)
    warm = WarmStart(str(path))
    with caplog.at_level(logging.INFO, logger="lit_vir.training.slim"):
        warm.on_fit_start(trainer, module)
    assert warm.applied is True
    assert f"fit starts from the backbone weights of {path}" in [record.getMessage() for record in caplog.records]
    with torch.no_grad():
        module.backbone.head.weight.add_(1.0)
    warm.on_fit_start(trainer, module)  # applied once: a second fit keeps what the first trained
    assert torch.equal(module.backbone.head.weight, source.head.weight + 1.0)


def test_a_mask_at_the_threshold_is_not_counted_as_pruned(tmp_path):
    """With the learning rate at 0 the attention and MLP masks stay at their initial 1 exactly; at a threshold of 1
    none of them is below it (pruned means |ζ| < threshold)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    module = SlimSearch(SearchableViT(**TINY), num_classes=5, sparsity_threshold=1.0,
                        optimizer=lambda groups: torch.optim.SGD(groups, lr=0.0))  # fmt: skip
    with pytest.warns(UserWarning, match="no init_from"):
        L.Trainer(max_epochs=1, logger=TensorBoardLogger(tmp_path), enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False).fit(module, random_images())  # fmt: skip
    assert (module.backbone.attention_mask == 1).all() and (module.backbone.mlp_mask == 1).all()
    logged = module.trainer.callback_metrics
    assert float(logged["masks/attention_sparsity"]) == 0.0 and float(logged["masks/mlp_sparsity"]) == 0.0


# ------------------------------------------------------------------ refusals, defaults and options, word for word

SLIM_TINY = dict(num_classes=5, image_size=16, in_channels=3, patch_size=4, embed_dim=24, head_dim=8)


def slim_vit_refusal(**changes) -> str:
    settings = {**SLIM_TINY, "head_widths": [[8, 8], [4]], "mlp_widths": [48, 0], **changes}
    with pytest.raises(ConfigError) as error:
        SlimViT(**settings)
    return str(error.value)


def test_a_slim_vit_refuses_each_inconsistent_structure_word_for_word():
    assert slim_vit_refusal(patch_size=5) == (
        "SlimViT: patch_size (P) = 5 does not divide image_size = 16; choose one of [1, 2, 4, 8, 16]."
    )
    assert slim_vit_refusal(head_dim=0) == "SlimViT: head_dim = 0 is outside the allowed range [1, inf)."
    assert slim_vit_refusal(attention_dropout=1.0) == (
        "SlimViT: attention_dropout = 1.0 is outside the allowed range [0, 1)."
    )
    lengths = "SlimViT: head_widths, mlp_widths and token_counts need one entry per block; got {}."
    assert slim_vit_refusal(mlp_widths=[48]) == lengths.format("2, 1 and 2")
    assert slim_vit_refusal(token_counts=[17]) == lengths.format("2, 2 and 1")
    assert slim_vit_refusal(head_widths=[], mlp_widths=[], token_counts=[]) == lengths.format("0, 0 and 0")
    assert slim_vit_refusal(head_widths=[[8, 9], [4]]) == (
        "SlimViT: head_widths[0] = [8, 9]: each width must be in [1, 8]."
    )
    assert slim_vit_refusal(head_widths=[[8], [0]]) == "SlimViT: head_widths[1] = [0]: each width must be in [1, 8]."
    assert slim_vit_refusal(mlp_widths=[48, -1]) == "SlimViT: mlp_widths = [48, -1] has a negative width."
    for order in ([1, 0, 2], [0, 2, 2], []):
        assert slim_vit_refusal(token_order=order, token_counts=[1, 1]) == (
            f"SlimViT: token_order must start with the class token 0 and not repeat: {order}."
        )
    assert slim_vit_refusal(token_order=[0, 17]) == (
        "SlimViT: token_order holds token 17, but 16×16 images in 4×4 patches have tokens 0..16: slim on the same "
        "dataset."
    )
    for counts in ([3, 5], [18, 2], [4, 0]):
        assert slim_vit_refusal(token_counts=counts) == (
            f"SlimViT: token_counts = {counts} must be non-increasing, between 1 and len(token_order) = 17."
        )


def test_a_slim_vit_takes_the_smallest_structure_and_documents_its_defaults():
    one = SlimViT(**{**SLIM_TINY, "head_dim": 1}, head_widths=[[1]], mlp_widths=[0], token_counts=[1])
    assert len(one.blocks) == 1 and one.blocks[0].num_tokens == 1
    default = SlimViT(head_widths=[[64]], mlp_widths=[8])
    assert default.init_args == {
        "num_classes": 10, "image_size": 32, "in_channels": 3, "head_widths": [[64]], "mlp_widths": [8],
        "token_order": list(range(65)), "token_counts": [65], "patch_size": 4, "embed_dim": 768, "head_dim": 64,
        "dropout": 0.0, "attention_dropout": 0.0, "drop_path_rate": 0.0, "pooling": "token",
    }  # fmt: skip
    assert default.head.out_features == 10 and default.patch_embed.kernel_size == (4, 4)
    assert default.patch_embed.in_channels == 3 and default.pos_embed.shape == (1, 65, 768)
    assert default.blocks[0].attn.scale == 64**-0.5
    assert torch.equal(default.token_order, torch.arange(65)) and "token_order" not in default.state_dict()
    block = default.blocks[0]
    assert (block.attn.attention_dropout, block.attn.proj_drop.p, block.drop_path.p) == (0.0, 0.0, 0.0)


def test_a_slim_blocks_dropouts_and_stochastic_depth_are_the_ones_given():
    model = SlimViT(**SLIM_TINY, head_widths=[[8], [8]], mlp_widths=[48, 48], dropout=0.1, attention_dropout=0.2,
                    drop_path_rate=0.3)  # fmt: skip
    first, last = model.blocks
    assert (first.attn.attention_dropout, first.attn.proj_drop.p) == (0.2, 0.1)
    assert [module.p for module in first.mlp.modules() if isinstance(module, torch.nn.Dropout)] == [0.1]
    assert (first.drop_path.p, last.drop_path.p) == (0.0, pytest.approx(0.3))  # linear over depth (float32 steps)
    default_block = SlimBlock(24, [8], 48, 17, 8**-0.5)
    assert (default_block.attn.attention_dropout, default_block.attn.proj_drop.p, default_block.drop_path.p) == (
        0.0, 0.0, 0.0
    )  # fmt: skip
    default_attention = SlimAttention(24, [8], 8**-0.5)
    assert (default_attention.attention_dropout, default_attention.proj_drop.p) == (0.0, 0.0)


def test_the_budgets_are_refused_outside_zero_one_by_name_with_the_hint():
    model = searched()
    for options, name, value in (
        ({"budget": 0.0}, "attention budget", 0.0),
        ({"budget": 0.5, "mlp_budget": 1.5}, "MLP budget", 1.5),
        ({"budget": 0.5, "token_budget": -0.1}, "token budget", -0.1),
    ):
        with pytest.raises(ConfigError) as error:
            keep_masks(model, **options)
        assert str(error.value) == (
            f"slim: {name} = {value} is outside the allowed range (0, 1]. It is the fraction of ζ kept."
        )
    everything = keep_masks(model, 1.0)
    assert everything.attention.all() and everything.mlp.all() and everything.tokens.all()
    own = keep_masks(model, 1.0, attention_budget=0.5, mlp_budget=0.25)
    assert own.attention.float().mean() == 0.5 and own.mlp.float().mean() == 0.25 and own.tokens.all()


def test_mean_pooling_needs_a_patch_token_in_the_last_block():
    model = searched(pooling="mean")
    with torch.no_grad():
        model.token_logit[-1, 1:].fill_(0.01)  # the last block's patches rank last
    with pytest.raises(ConfigError) as error:
        keep_masks(model, 1.0, token_budget=0.02)
    assert str(error.value) == (
        "slim: token budget 0.02 keeps no patch token in the last block, which mean pooling reads; raise the token "
        "budget."
    )
    keep_masks(searched(pooling="token"), 1.0, token_budget=0.02)  # the class token pooling reads is always kept


def test_the_ranking_is_by_magnitude_unless_told_and_ties_keep_the_earlier_entry():
    scores = torch.tensor([0.5, -2.0, 1.0, 0.1])
    assert top_fraction(scores, 0.5).tolist() == [False, True, True, False]
    assert top_fraction(scores, 0.5, "signed").tolist() == [True, False, True, False]
    with pytest.raises(ConfigError) as error:
        top_fraction(scores, 0.5, "largest")
    assert str(error.value) == "slim: ranking = 'largest' is not one of 'magnitude', 'signed'."
    tied = torch.ones(5000)
    kept = top_fraction(tied, 0.3)
    assert kept[:1500].all() and not kept[1500:].any()
    model = searched()
    with torch.no_grad():
        model.attention_mask.neg_()  # every ζ negative: signed ranking keeps the smallest magnitudes
    signed = keep_masks(model, 0.5, ranking="signed").attention
    assert torch.equal(signed, top_fraction(model.attention_mask, 0.5, "signed"))
    assert not torch.equal(signed, keep_masks(model, 0.5).attention)


def test_a_search_model_refuses_its_options_word_for_word_and_takes_the_vits_positional_ones():
    with pytest.raises(ConfigError) as error:
        SearchableViT(**TINY, attention_search="block")
    assert str(error.value) == "SearchableViT: attention_search = 'block' is not one of 'channel', 'head', 'head_dim'."
    for name in ("attention_l1", "mlp_l1", "token_l1"):
        with pytest.raises(ConfigError) as error:
            SearchableViT(**TINY, **{name: -1e-3})
        label = {"attention_l1": "attention_l1 (w1)", "mlp_l1": "mlp_l1 (w2)", "token_l1": "token_l1 (w3)"}[name]
        assert str(error.value) == f"SearchableViT: {label} = -0.001 is outside the allowed range [0, inf)."
    free = SearchableViT(**TINY, attention_l1=0.0, mlp_l1=0.0, token_l1=0.0)
    assert free.sparsity_loss() == 0
    model = SearchableViT(5, 16, 3, patch_size=4, embed_dim=24, depth=3, num_heads=3, mlp_ratio=2.0)
    assert model.head.out_features == 5 and model.pos_embed.shape == (1, 17, 24) and model.patch_embed.in_channels == 3
    assert model.l1_weights == (1e-4, 1e-4, 1e-4) and model.attention_search == "channel"
    assert set(model.masks()) == {"attention", "mlp", "token"}
    assert model.no_weight_decay() == VisionTransformer(**TINY).no_weight_decay() | {
        "attention_mask", "mlp_mask", "token_logit"
    }  # fmt: skip


def test_weights_that_do_not_fit_the_search_model_are_refused_with_the_reason():
    model = SearchableViT(**TINY)
    other = VisionTransformer(**{**TINY, "embed_dim": 12, "num_heads": 2})
    with pytest.raises(RuntimeError) as reason:
        model.load_state_dict(other.state_dict(), strict=False)
    with pytest.raises(ConfigError) as error:
        model.load_vit_weights(other.state_dict())
    assert str(error.value) == (
        f"SearchableViT: the ViT weights do not fit this architecture ({str(reason.value).splitlines()[-1].strip()}). "
        "Build the search model with the ViT's own settings (the same model piece: width, depth, heads, MLP ratio, "
        "patch size, and the same dataset)."
    )
    weights = trained_vit().state_dict()
    for state, missing, unexpected in (
        ({key: value for key, value in weights.items() if key != "head.bias"}, ["head.bias"], []),
        ({**weights, "extra": torch.ones(1)}, [], ["extra"]),
    ):
        with pytest.raises(ConfigError) as error:
            model.load_vit_weights(state)
        assert str(error.value) == (
            f"SearchableViT: the weights are not a baseline ViT's: missing {missing}, unexpected {unexpected}. "
            "The search starts from a `lit_vir.models.VisionTransformer` checkpoint."
        )


def test_from_vit_reads_the_vits_own_sizes():
    vit = VisionTransformer(num_classes=4, image_size=24, in_channels=1, patch_size=6, embed_dim=32, depth=2,
                            num_heads=4, mlp_ratio=3.0, attention_dropout=0.1, pooling="mean")  # fmt: skip
    search = SearchableViT.from_vit(vit)
    assert search.pos_embed.shape == (1, 17, 32) and search.patch_embed.kernel_size == (6, 6)
    assert search.blocks[0].attn.num_heads == 4 and search.blocks[0].mlp.fc1.out_features == 96
    assert search.blocks[0].attn.attention_dropout == 0.1 and search.pooling == "mean"


def test_attention_dropout_acts_in_training_only():
    model = SearchableViT(**TINY, attention_dropout=0.5)
    batch = images()
    model.eval()
    torch.testing.assert_close(model(batch), model(batch), rtol=0, atol=0)
    model.train()
    torch.manual_seed(0)
    first = model(batch)
    assert not torch.allclose(first, model(batch))


def test_a_float64_search_model_runs_and_slims_in_float64():
    model = searched()
    reference = model(images()).double()
    search = copy.deepcopy(model).double()
    batch = images().double()
    torch.testing.assert_close(search(batch), reference, rtol=1e-4, atol=1e-4)
    slimmed = slim(search, 0.5)
    assert all(parameter.dtype == torch.float64 for parameter in slimmed.parameters())
    assert slimmed(batch).dtype == torch.float64


def test_slim_passes_each_budget_and_the_search_models_settings_on():
    search = SearchableViT.from_vit(VisionTransformer(num_classes=5, image_size=16, in_channels=1, patch_size=2,
                                                      embed_dim=24, depth=2, num_heads=3, mlp_ratio=2.0, dropout=0.1,
                                                      attention_dropout=0.2, drop_path_rate=0.3))  # fmt: skip
    slimmed = slim(search, 1.0, mlp_budget=0.5)
    assert sum(slimmed.init_args["mlp_widths"]) == 48  # half of 2 × 48 units
    assert {key: slimmed.init_args[key] for key in ("in_channels", "patch_size", "dropout", "attention_dropout",
                                                    "drop_path_rate")} == {
        "in_channels": 1, "patch_size": 2, "dropout": 0.1, "attention_dropout": 0.2, "drop_path_rate": 0.3
    }  # fmt: skip


def test_from_vit_takes_a_one_block_vit_and_refuses_a_width_its_ratio_cannot_rebuild():
    one = VisionTransformer(**{**TINY, "depth": 1})
    assert len(SearchableViT.from_vit(one).blocks) == 1
    odd = VisionTransformer(num_classes=5, image_size=16, in_channels=3, patch_size=4, embed_dim=11, depth=1,
                            num_heads=1, mlp_ratio=1.3637)  # fmt: skip
    assert odd.blocks[0].mlp.fc1.out_features == 15  # int(11 · 1.3637); 15/11 rebuilds int(14.99…) = 14
    with pytest.raises(ValueError) as error:
        SearchableViT.from_vit(odd)
    assert str(error.value) == f"SearchableViT.from_vit: mlp_ratio {15 / 11} does not reproduce the width."


def test_the_signed_ranking_reaches_the_tokens_too():
    model = searched()
    with torch.no_grad():
        model.token_logit[:, 1:9].fill_(-2.5)  # strongly negative ζ_tok: kept by magnitude, last when signed
    for rank_class_token in (False, True):
        signed = keep_masks(model, 1.0, token_budget=0.5, ranking="signed", rank_class_token=rank_class_token)
        magnitude = keep_masks(model, 1.0, token_budget=0.5, rank_class_token=rank_class_token)
        assert not signed.tokens[:, 1:9].any() and magnitude.tokens[:, 1:9].all()


def test_mean_pooling_reads_the_last_blocks_patches_whichever_earlier_blocks_keep():
    """One patch kept in all (token budget 0.02 of 3 × 16): kept up to block 1 only is refused, although blocks 0
    and 1 keep a patch; kept in the last block as patch 1 (the first patch) is enough."""
    model = searched(pooling="mean")
    with torch.no_grad():
        model.token_logit.fill_(0.01)
        model.token_logit[1, 5] = 3.0  # the one kept patch: block 1's patch 5
    with pytest.raises(ConfigError, match="keeps no patch token in the last block"):
        keep_masks(model, 1.0, token_budget=0.02)
    with torch.no_grad():
        model.token_logit[1, 5] = 0.01
        model.token_logit[-1, 1] = 3.0  # the last block's first patch
    kept = keep_masks(model, 1.0, token_budget=0.02).tokens
    assert kept[-1].tolist() == [True, True] + [False] * 15


def test_a_search_model_runs_under_bf16_autocast():
    """The token mask's key bias is cast to the attention's dtype, bf16 under autocast on the CPU."""
    model = searched()
    batch = images()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(batch)
    torch.testing.assert_close(mixed.float(), model(batch), rtol=0.1, atol=0.15)
