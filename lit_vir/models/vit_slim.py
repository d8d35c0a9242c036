"""ViT-Slim (Chavan et al., CVPR 2022): search a slimmer ViT with soft masks, then build it physically smaller.

Phase 1 trains the baseline `VisionTransformer`. Phase 2 searches: `SearchableViT.from_vit(vit)` is the same
network with learnable masks ζ, all starting near 1, per block l (L blocks, H heads of width d, M MLP units,
T+1 tokens with the class token first):

    ζ_attn[l]  (H, d)   over the q/k/v channels, shared by q, k and v     (`attention_search="channel"`)
               (H, 1)   whole heads                                        (`"head"`)
               (1, d)   one per head-dim, shared across heads              (`"head_dim"`)
    ζ_mlp[l]   (M,)     over the MLP hidden units, after the activation
    ζ_tok[l] = tanh(p[l]), p = 3 at init, (T+1,): multiplies the normalised tokens entering attention and MLP

    loss = cross-entropy + w1·Σ|ζ_attn| + w2·Σ|ζ_mlp| + w3·Σ|ζ_tok|                        (`sparsity_loss`)

Phase 3 slims: `slim(model, budget)` ranks each mask type's entries over all blocks by |ζ|, keeps the top
`budget` fraction (so every block ends with its own width), makes the token keep-masks monotone (a token
kept at a later block is kept at every earlier one) and builds a `SlimViT`: a genuinely smaller network
whose pruned heads, channels, MLP units and tokens are gone, with the kept ζ values folded into its
weights. Its logits equal the masked model's with the pruned entries of ζ set to 0 (`apply_keep_masks`).

Against the original code (github.com/Arnav0400/ViT-Slim, `models/base_model.py`, `models/layers.py`), three
choices of the slimming step are options, the original's being `slim(..., **ORIGINAL)`:
    ranking="signed"        the original ranks the signed ζ (`sorted(zetas)`, keep ζ ≥ threshold); default |ζ|
    rank_class_token=True   the original ranks the class token with the patches; default: always kept
    binarize=True           the original retrains with the kept ζ set to 1 (`searched_zeta`); default: the kept
                            soft ζ folded into the weights, so the slim model starts as the masked model
The kept count is round(budget·n), the original's n − ⌊(1 − budget)·n⌋ (they differ by one at some n).

One departure that is not an option, so that a token mask of 0 *is* the token's removal: ζ_tok also weights
each token as an attention key, a_ij ∝ |ζ_tok,j|·exp(s_ij) (log|ζ_tok| added to the logits). The original only
zeroes a pruned token's input, which leaves it in every softmax as a bias-only key. With mean pooling the
head averages the patch tokens weighted by the last block's |ζ_tok|, for the same reason.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from lit_vir.checks import ConfigError, check_choice, check_divides, check_probabilities, check_range
from lit_vir.models.drop_path import linear_drop_path_rates
from lit_vir.models.vit import Block, Mlp, VisionTransformer, ViTFrame

__all__ = [
    "ORIGINAL",
    "KeepMasks",
    "SearchableViT",
    "SlimViT",
    "apply_keep_masks",
    "build_slim",
    "keep_masks",
    "slim",
    "vit_hyperparameters",
]

AttentionSearch = Literal["channel", "head", "head_dim"]


BINARY_TOKEN_LOGIT = 20.0  # tanh(20) is 1.0 in float32 and float64: a kept token's binary ζ_tok
ORIGINAL = {"ranking": "signed", "rank_class_token": True, "binarize": True}  # the original code's slimming


def key_bias(token_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """log|ζ_tok| as an additive attention mask over keys, (1, 1, 1, N): a token with ζ 0 gets weight 0."""
    return token_mask.abs().clamp_min(torch.finfo(token_mask.dtype).tiny).log().to(dtype).view(1, 1, 1, -1)


def weighted_mean(tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_j |w_j|·x_j / Σ_j |w_j| over the token axis: (B, N, D), (N,) → (B, D)."""
    weights = weights.abs()
    return (tokens * weights[:, None]).sum(dim=1) / weights.sum().clamp_min(torch.finfo(weights.dtype).tiny)


def vit_hyperparameters(model: VisionTransformer) -> dict:
    """The constructor keywords of a built `VisionTransformer` (or subclass), read back from its modules."""
    embed_dim = model.cls_token.shape[-1]
    patch_size = model.patch_embed.kernel_size[0]
    return {
        "num_classes": model.num_classes,
        "image_size": math.isqrt(model.pos_embed.shape[1] - 1) * patch_size,
        "in_channels": model.patch_embed.in_channels,
        "patch_size": patch_size,
        "embed_dim": embed_dim,
        "depth": model.depth,
        "num_heads": model.blocks[0].attn.num_heads,
        "mlp_ratio": model.blocks[0].mlp.fc1.out_features / embed_dim,
        "dropout": model.pos_drop.p,
        "attention_dropout": model.blocks[0].attn.attention_dropout,
        "drop_path_rate": model.drop_path_rate,
        "pooling": model.pooling,
    }


class MaskedBlock(Block):
    """The baseline's block (same layers) with ViT-Slim's soft masks, which the search model owns and
    passes in: ζ_tok weights the normalised tokens entering both branches and each key (`key_bias`),
    ζ_attn the q, k and v channels, ζ_mlp the MLP hidden units after the activation."""

    def forward(
        self, tokens: torch.Tensor, channel_mask: torch.Tensor, mlp_mask: torch.Tensor, token_mask: torch.Tensor
    ) -> torch.Tensor:
        """(B, T+1, D) with ζ_attn (H|1, d|1), ζ_mlp (M,), ζ_tok (T+1,) → (B, T+1, D)."""
        attention, mlp = self.attn, self.mlp
        channel_mask = channel_mask.unsqueeze(1)  # (H|1, 1, d|1)
        q, k, v = (part * channel_mask for part in attention.split_heads(self.norm1(tokens) * token_mask[:, None]))
        dropout = attention.attention_dropout if self.training else 0.0
        mixed = F.scaled_dot_product_attention(
            q, k, v, attn_mask=key_bias(token_mask, q.dtype), dropout_p=dropout, scale=attention.scale
        )  # (B, H, T+1, d)
        tokens = tokens + self.drop_path(attention.merge_heads(mixed))
        hidden = mlp.act(mlp.fc1(self.norm2(tokens) * token_mask[:, None])) * mlp_mask  # (B, T+1, M)
        return tokens + self.drop_path(mlp.drop(mlp.fc2(mlp.drop(hidden))))


class SearchableViT(VisionTransformer):
    """The baseline ViT with ViT-Slim's soft masks over attention channels, MLP units and tokens.

    Takes `attention_search` (the attention mask's shape, see the module docstring), `token_logit_init`
    (p at init; ζ_tok = tanh p) and the L1 weights w1, w2, w3 (`attention_l1`, `mlp_l1`, `token_l1`);
    every other argument is the baseline's (`VisionTransformer`), with `MaskedBlock` as its block. The masks
    are three parameters, one row per block: `attention_mask` (L, H|1, d|1), `mlp_mask` (L, M) and
    `token_logit` (L, T+1).
    """

    MASK_PARAMETERS = ("attention_mask", "mlp_mask", "token_logit")
    block_fn = MaskedBlock

    def __init__(
        self,
        *args: Any,
        attention_search: AttentionSearch = "channel",
        token_logit_init: float = 3.0,
        attention_l1: float = 1e-4,
        mlp_l1: float = 1e-4,
        token_l1: float = 1e-4,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        owner = type(self).__name__
        check_choice(owner, "attention_search", attention_search, ("channel", "head", "head_dim"))
        for name, weight in (("attention_l1 (w1)", attention_l1), ("mlp_l1 (w2)", mlp_l1), ("token_l1 (w3)", token_l1)):
            check_range(owner, name, weight, low=0)
        heads, head_dim = self.blocks[0].attn.num_heads, self.blocks[0].attn.head_dim
        shape = {"channel": (heads, head_dim), "head": (heads, 1), "head_dim": (1, head_dim)}[attention_search]
        self.attention_search = attention_search
        self.l1_weights = (attention_l1, mlp_l1, token_l1)
        self.attention_mask = nn.Parameter(torch.ones(self.depth, *shape))
        self.mlp_mask = nn.Parameter(torch.ones(self.depth, self.blocks[0].mlp.fc1.out_features))
        self.token_logit = nn.Parameter(torch.full((self.depth, self.pos_embed.shape[1]), float(token_logit_init)))

    def no_weight_decay(self) -> set[str]:
        """The baseline's, plus the masks ζ (2-d and 3-d): their only pull towards 0 is the L1 term."""
        return super().no_weight_decay() | set(self.MASK_PARAMETERS)

    @classmethod
    def from_vit(cls, vit: VisionTransformer, **search_options) -> SearchableViT:
        """The searchable copy of a (trained) baseline ViT: its weights, masks at their initial values.
        With every mask at 1 (ζ_tok → 1 as p → ∞) its logits are the ViT's."""
        options = vit_hyperparameters(vit) | search_options
        searchable = cls(**options)
        if searchable.blocks[0].mlp.fc1.out_features != vit.blocks[0].mlp.fc1.out_features:
            raise ValueError(f"{cls.__name__}.from_vit: mlp_ratio {options['mlp_ratio']} does not reproduce the width.")
        searchable.load_vit_weights(vit.state_dict())
        return searchable.to(vit.cls_token.device)

    def load_vit_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Copy a baseline ViT's state dict in; the masks keep their values unless the dict has them."""
        owner = type(self).__name__
        try:
            missing, unexpected = self.load_state_dict(state_dict, strict=False)
        except RuntimeError as error:
            raise ConfigError(
                f"{owner}: the ViT weights do not fit this architecture ({str(error).splitlines()[-1].strip()}). "
                "Build the search model with the ViT's own settings (the same model piece: width, depth, heads, "
                "MLP ratio, patch size, and the same dataset)."
            ) from error
        missing = [name for name in missing if name not in self.MASK_PARAMETERS]
        if missing or unexpected:
            raise ConfigError(
                f"{owner}: the weights are not a baseline ViT's: missing {missing}, unexpected {unexpected}. "
                "The search starts from a `lit_vir.models.VisionTransformer` checkpoint."
            )

    @property
    def token_mask(self) -> torch.Tensor:
        """ζ_tok = tanh(p): (L, T+1)."""
        return torch.tanh(self.token_logit)

    def masks(self) -> dict[str, torch.Tensor]:
        """The three mask types by name: attention (L, H|1, d|1), mlp (L, M), token (L, T+1)."""
        return {"attention": self.attention_mask, "mlp": self.mlp_mask, "token": self.token_mask}

    def sparsity_loss(self) -> torch.Tensor:
        """w1·Σ|ζ_attn| + w2·Σ|ζ_mlp| + w3·Σ|ζ_tok|, summed over every block."""
        w1, w2, w3 = self.l1_weights
        return w1 * self.attention_mask.abs().sum() + w2 * self.mlp_mask.abs().sum() + w3 * self.token_mask.abs().sum()

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.tokens(images)
        for block, channel_mask, mlp_mask, token_mask in zip(
            self.blocks, self.attention_mask, self.mlp_mask, self.token_mask, strict=True
        ):
            # the masks go by keyword: a row of a parameter taken under no_grad requires grad yet has no grad_fn, and
            # torch's ModuleTracker (FLOP counting in Lightning's summary) hooks every positional input needing grad
            tokens = block(tokens, channel_mask=channel_mask, mlp_mask=mlp_mask, token_mask=token_mask)
        return self.norm(tokens)  # (B, T+1, D)

    def mean_of_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Weighted by the last block's |ζ_tok| (see the module docstring)."""
        return weighted_mean(patches, torch.tanh(self.token_logit[-1, 1:]))


@contextlib.contextmanager
def allow_zero_width() -> Iterator[None]:
    """Build layers that a budget may have pruned to nothing without torch's zero-element init warning:
    a Linear of width 0 is exact (it adds only its bias, as the fully masked layer did)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
        yield


class SlimAttention(nn.Module):
    """Self-attention whose heads keep their own numbers of channels, at the searched ViT's scale 1/√d.

    q, k and v hold only the kept channels, head after head. Consecutive heads of equal width share one
    fused attention call (`build_slim` orders each block's heads by width, so a block makes one call per
    distinct width); nothing is padded, so the work is the kept channels' work.
    """

    def __init__(
        self, dim: int, head_widths: list[int], scale: float, attention_dropout: float = 0.0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.head_widths = list(head_widths)
        self.scale = scale
        with allow_zero_width():
            self.qkv = nn.Linear(dim, 3 * sum(self.head_widths))
            self.proj = nn.Linear(sum(self.head_widths), dim)
        self.attention_dropout = attention_dropout
        self.proj_drop = nn.Dropout(dropout)
        self.groups = []  # (first channel, heads, width) of each run of equal-width heads
        start = 0
        for width, run in itertools.groupby(self.head_widths):
            heads = len(list(run))
            self.groups.append((start, heads, width))
            start += heads * width

    def forward(self, tokens: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if not self.head_widths:  # every head pruned: the projection's bias is all that is left
            return self.proj_drop(self.proj(tokens.new_zeros(*tokens.shape[:-1], 0)))
        batch, length, _ = tokens.shape
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)  # (B, T, C) each
        bias = bias.to(q.dtype)  # q is bf16/fp16 under autocast
        dropout = self.attention_dropout if self.training else 0.0
        outputs = []
        for start, heads, width in self.groups:
            channels = slice(start, start + heads * width)
            q_group, k_group, v_group = (
                part[..., channels].reshape(batch, length, heads, width).transpose(1, 2) for part in (q, k, v)
            )  # (B, heads, T, width)
            mixed = F.scaled_dot_product_attention(
                q_group, k_group, v_group, attn_mask=bias, dropout_p=dropout, scale=self.scale
            )
            outputs.append(mixed.transpose(1, 2).reshape(batch, length, heads * width))
        return self.proj_drop(self.proj(torch.cat(outputs, dim=-1)))  # (B, T, D)


class SlimBlock(nn.Module):
    """A pre-norm block of a slimmed ViT: keeps its first `num_tokens` tokens, scales them by the kept ζ_tok
    (`token_scale`, a buffer from the search) and runs narrowed attention and MLP."""

    def __init__(
        self,
        dim: int,
        head_widths: list[int],
        mlp_width: int,
        num_tokens: int,
        scale: float,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SlimAttention(dim, head_widths, scale, attention_dropout, dropout)
        self.norm2 = nn.LayerNorm(dim)
        with allow_zero_width():
            self.mlp = Mlp(dim, mlp_width, dropout)
        self.drop_path = StochasticDepth(drop_path, mode="row")
        self.register_buffer("token_scale", torch.ones(num_tokens))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens[:, : self.num_tokens]  # (B, k_l, D): tokens dropped here are gone for good
        scale = self.token_scale[:, None]  # (k_l, 1)
        bias = key_bias(self.token_scale, tokens.dtype)
        tokens = tokens + self.drop_path(self.attn(self.norm1(tokens) * scale, bias))
        return tokens + self.drop_path(self.mlp(self.norm2(tokens) * scale))


class SlimViT(ViTFrame):
    """A ViT slimmed by ViT-Slim: every block with its own heads, head widths, MLP width and token count.

    The structure is plain data, so it lives in a checkpoint's hyperparameters and in YAML:
        head_widths[l]   the kept heads' widths in block l (a fully pruned head is absent; [] = no attention);
                         heads of equal width next to each other share one attention call
        mlp_widths[l]    the kept MLP units of block l (0 = no MLP)
        token_order      the tokens kept by block 0, as indices into [class token, patch 1, …, patch T],
                         ordered by how many blocks keep them (the class token, index 0, first)
        token_counts[l]  block l keeps the first token_counts[l] of them (non-increasing)
    `head_dim` is the searched ViT's head width: it sets the attention scale 1/√d and bounds each head.
    """

    def __init__(
        self,
        num_classes: int = 10,
        image_size: int = 32,
        in_channels: int = 3,
        *,
        head_widths: list[list[int]],
        mlp_widths: list[int],
        token_order: list[int] | None = None,
        token_counts: list[int] | None = None,
        patch_size: int = 4,
        embed_dim: int = 768,
        head_dim: int = 64,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        pooling: Literal["token", "mean"] = "token",
    ) -> None:
        owner = type(self).__name__
        check_divides(owner, "patch_size (P)", patch_size, image_size, "image_size")  # before the token checks
        check_range(owner, "head_dim", head_dim, low=1)
        check_probabilities(owner, attention_dropout=attention_dropout)
        depth = len(head_widths)
        num_patches = (image_size // patch_size) ** 2
        token_order = list(range(num_patches + 1)) if token_order is None else list(token_order)
        token_counts = [len(token_order)] * depth if token_counts is None else list(token_counts)
        if depth < 1 or len(mlp_widths) != depth or len(token_counts) != depth:
            raise ConfigError(
                f"{owner}: head_widths, mlp_widths and token_counts need one entry per block; got "
                f"{len(head_widths)}, {len(mlp_widths)} and {len(token_counts)}."
            )
        for layer, widths in enumerate(head_widths):
            if any(not 1 <= width <= head_dim for width in widths):
                raise ConfigError(f"{owner}: head_widths[{layer}] = {widths}: each width must be in [1, {head_dim}].")
        if any(width < 0 for width in mlp_widths):
            raise ConfigError(f"{owner}: mlp_widths = {mlp_widths} has a negative width.")
        if not token_order or token_order[0] != 0 or len(set(token_order)) != len(token_order):
            raise ConfigError(f"{owner}: token_order must start with the class token 0 and not repeat: {token_order}.")
        if max(token_order) > num_patches:
            raise ConfigError(
                f"{owner}: token_order holds token {max(token_order)}, but {image_size}×{image_size} images in "
                f"{patch_size}×{patch_size} patches have tokens 0..{num_patches}: slim on the same dataset."
            )
        non_increasing = all(a >= b for a, b in itertools.pairwise(token_counts))
        if not (non_increasing and len(token_order) >= token_counts[0] and token_counts[-1] >= 1):
            raise ConfigError(
                f"{owner}: token_counts = {token_counts} must be non-increasing, between 1 and "
                f"len(token_order) = {len(token_order)}."
            )

        def blocks() -> Iterator[SlimBlock]:
            rates = linear_drop_path_rates(drop_path_rate, depth)
            for widths, mlp_width, count, rate in zip(head_widths, mlp_widths, token_counts, rates, strict=True):
                yield SlimBlock(embed_dim, widths, mlp_width, count, head_dim**-0.5, dropout, attention_dropout, rate)

        positions = len(token_order)
        super().__init__(
            num_classes,
            image_size,
            in_channels,
            patch_size,
            embed_dim,
            dropout,
            drop_path_rate,
            pooling,
            blocks,
            positions,
        )
        self.register_buffer("token_order", torch.tensor(token_order, dtype=torch.long), persistent=False)
        self.init_args = {  # the structure as plain data, for configs and checkpoint hyperparameters
            "num_classes": num_classes,
            "image_size": image_size,
            "in_channels": in_channels,
            "head_widths": [list(widths) for widths in head_widths],
            "mlp_widths": list(mlp_widths),
            "token_order": token_order,
            "token_counts": token_counts,
            "patch_size": patch_size,
            "embed_dim": embed_dim,
            "head_dim": head_dim,
            "dropout": dropout,
            "attention_dropout": attention_dropout,
            "drop_path_rate": drop_path_rate,
            "pooling": pooling,
        }

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.class_and_patches(images)  # (B, T+1, D)
        tokens = self.pos_drop(tokens.index_select(1, self.token_order) + self.pos_embed)  # (B, k_0, D)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)  # (B, k_L, D)

    def mean_of_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Weighted by the last block's |ζ_tok| (a token of scale 0 is removed, see the module docstring)."""
        return weighted_mean(patches, self.blocks[-1].token_scale[1:])


@dataclass(frozen=True)
class KeepMasks:
    """Which mask entries survive a budget (boolean, in the masks' shapes): `attention` (L, H|1, d|1),
    `mlp` (L, M), `tokens` (L, T+1) — monotone over depth (the class token kept unless it was ranked)."""

    attention: torch.Tensor
    mlp: torch.Tensor
    tokens: torch.Tensor


Ranking = Literal["magnitude", "signed"]


def top_fraction(scores: torch.Tensor, budget: float, ranking: Ranking = "magnitude") -> torch.Tensor:
    """True at the round(budget·n) entries of `scores` ranked highest (ties: the earlier entry first): by |ζ|
    (`"magnitude"`), or by the signed ζ as the original code does (`"signed"`: a negative ζ ranks last)."""
    check_choice("slim", "ranking", ranking, ("magnitude", "signed"))
    flat = scores.detach().flatten()
    flat = flat.abs() if ranking == "magnitude" else flat
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.argsort(flat, descending=True, stable=True)[: math.floor(budget * flat.numel() + 0.5)]] = True
    return keep.view(scores.shape)


def keep_masks(
    model: SearchableViT,
    budget: float,
    *,
    attention_budget: float | None = None,
    mlp_budget: float | None = None,
    token_budget: float | None = None,
    ranking: Ranking = "magnitude",
    rank_class_token: bool = False,
) -> KeepMasks:
    """Rank each mask type over all blocks and keep the top fraction: `budget`, or the type's own.

    `ranking`: by |ζ| (default), or by signed ζ (`"signed"`, the original code's `sorted(zetas)` and
    ζ ≥ threshold: a strongly negative ζ is pruned there, kept here). Tokens are ranked over the patch
    tokens of every block with the class token always kept, or, with `rank_class_token` (the original),
    over all T+1 tokens; then made monotone: a token kept at block l is kept at every block before it.
    The kept count is round(budget·n); the original keeps n − ⌊(1 − budget)·n⌋ (one more at some n).
    """
    budgets = {
        "attention budget": budget if attention_budget is None else attention_budget,
        "MLP budget": budget if mlp_budget is None else mlp_budget,
        "token budget": budget if token_budget is None else token_budget,
    }
    for name, value in budgets.items():
        check_range("slim", name, value, low=0, high=1, low_inclusive=False, hint="It is the fraction of ζ kept.")
    attention_share, mlp_share, token_share = budgets.values()
    if rank_class_token:
        tokens = top_fraction(model.token_mask, token_share, ranking)  # (L, T+1)
    else:
        patches = top_fraction(model.token_mask[:, 1:], token_share, ranking)  # (L, T)
        tokens = torch.cat([torch.ones_like(patches[:, :1]), patches], dim=1)  # (L, T+1)
    tokens = tokens.flip(0).cumsum(0).flip(0) > 0  # kept at l ⇐ kept at any l' ≥ l
    if model.pooling == "mean" and not tokens[-1, 1:].any():
        raise ConfigError(
            f"slim: token budget {token_share} keeps no patch token in the last block, which mean pooling reads; "
            "raise the token budget."
        )
    return KeepMasks(
        top_fraction(model.attention_mask, attention_share, ranking),
        top_fraction(model.mlp_mask, mlp_share, ranking),
        tokens,
    )


def apply_keep_masks(model: SearchableViT, keep: KeepMasks, binarize: bool = False) -> SearchableViT:
    """A copy of the search model with the pruned entries of every ζ set to 0 and the kept ones keeping their
    values, or set to 1 (`binarize`, the original's `searched_zeta`): the network `build_slim` reproduces."""
    masked = copy.deepcopy(model)
    with torch.no_grad():
        if binarize:
            masked.attention_mask.copy_(keep.attention)
            masked.mlp_mask.copy_(keep.mlp)
            masked.token_logit.fill_(BINARY_TOKEN_LOGIT)
        masked.attention_mask.mul_(keep.attention)
        masked.mlp_mask.mul_(keep.mlp)
        masked.token_logit.masked_fill_(~keep.tokens, 0.0)  # tanh(0) = 0
    return masked


def build_slim(model: SearchableViT, keep: KeepMasks, binarize: bool = False) -> SlimViT:
    """The physically smaller ViT: pruned heads, channels, MLP units and tokens removed; the kept ζ_attn and
    ζ_mlp folded into the q/k/v rows and the second MLP layer's columns, the kept ζ_tok into `token_scale`.

    `binarize` (the original): every kept ζ counts as 1, so the slim model is the trained ViT's weights
    restricted to what survives; by default the soft kept values are folded in (the masked model's function).
    A pruned class token (`rank_class_token`) stays in the sequence with `token_scale` 0, as in the masked
    model: its branches see zeros and no token attends to it, but the head still reads it."""
    options = vit_hyperparameters(model)
    depth, embed_dim = options["depth"], options["embed_dim"]
    head_dim = embed_dim // options["num_heads"]
    attention_keep = keep.attention.expand(depth, options["num_heads"], head_dim)  # (L, H, d)
    gains = model.attention_mask.detach() if not binarize else torch.ones_like(model.attention_mask)
    attention_gain = gains.expand(depth, options["num_heads"], head_dim)
    mlp_gain = model.mlp_mask.detach() if not binarize else torch.ones_like(model.mlp_mask)
    token_mask = (model.token_mask.detach() if not binarize else torch.ones_like(model.token_mask)) * keep.tokens
    sequence = keep.tokens.clone()
    sequence[:, 0] = True  # the class token is never removed from the sequence: the head reads it
    survival = sequence.sum(dim=0)  # (T+1,) blocks each token lives through (a prefix: the masks are monotone)
    order = [index for index in torch.argsort(survival, descending=True, stable=True).tolist() if survival[index] > 0]
    token_counts = sequence.sum(dim=1).tolist()
    slimmed = SlimViT(
        options["num_classes"],
        options["image_size"],
        options["in_channels"],
        head_widths=[sorted(filter(None, layer.sum(dim=-1).tolist()), reverse=True) for layer in attention_keep],
        mlp_widths=keep.mlp.sum(dim=1).tolist(),
        token_order=order,
        token_counts=token_counts,
        patch_size=options["patch_size"],
        embed_dim=embed_dim,
        head_dim=head_dim,
        dropout=options["dropout"],
        attention_dropout=options["attention_dropout"],
        drop_path_rate=options["drop_path_rate"],
        pooling=options["pooling"],
    ).to(model.cls_token.device, model.cls_token.dtype)  # float64 search → float64 slim model
    with torch.no_grad():
        slimmed.patch_embed.load_state_dict(model.patch_embed.state_dict())
        slimmed.cls_token.copy_(model.cls_token)
        slimmed.pos_embed.copy_(model.pos_embed[:, order])
        for layer, (target, source) in enumerate(zip(slimmed.blocks, model.blocks, strict=True)):
            target.norm1.load_state_dict(source.norm1.state_dict())
            target.norm2.load_state_dict(source.norm2.state_dict())
            kept = attention_keep[layer]  # (H, d)
            heads = torch.argsort(kept.sum(dim=-1), descending=True, stable=True)  # widest first, as in head_widths
            channels = (heads[:, None] * head_dim + torch.arange(head_dim, device=kept.device))[kept[heads]]
            rows = torch.cat([channels + part * embed_dim for part in range(3)])  # their q, k and v rows
            gain = attention_gain[layer].flatten()[channels].repeat(3)
            target.attn.qkv.weight.copy_(source.attn.qkv.weight[rows] * gain[:, None])
            target.attn.qkv.bias.copy_(source.attn.qkv.bias[rows] * gain)
            target.attn.proj.weight.copy_(source.attn.proj.weight[:, channels])
            target.attn.proj.bias.copy_(source.attn.proj.bias)
            units = keep.mlp[layer].nonzero().squeeze(1)
            target.mlp.fc1.weight.copy_(source.mlp.fc1.weight[units])
            target.mlp.fc1.bias.copy_(source.mlp.fc1.bias[units])
            target.mlp.fc2.weight.copy_(source.mlp.fc2.weight[:, units] * mlp_gain[layer, units])
            target.mlp.fc2.bias.copy_(source.mlp.fc2.bias)
            target.token_scale.copy_(token_mask[layer, order[: token_counts[layer]]])
        slimmed.norm.load_state_dict(model.norm.state_dict())
        slimmed.head.load_state_dict(model.head.state_dict())
    return slimmed.train(model.training)


def slim(model: SearchableViT, budget: float, *, binarize: bool = False, **selection: Any) -> SlimViT:
    """ViT-Slim's slimming step: `build_slim(model, keep_masks(model, budget, **selection), binarize)`, where
    `selection` is `keep_masks`' keywords (a budget per mask type, `ranking`, `rank_class_token`). The original
    code's behaviour is `slim(model, budget, **ORIGINAL)`: `ranking="signed", rank_class_token=True, binarize=True`."""
    return build_slim(model, keep_masks(model, budget, **selection), binarize)
