"""The ViT baseline (Dosovitskiy et al. 2021) at small-image sizes, the model ViR is compared with.

Patch embedding (stride-P convolution) → class token + learned positional embedding → L pre-norm
blocks (x += MHSA(LN x); x += MLP(LN x), optional stochastic depth on both) → LN → Linear on the class
token (or the token mean).
Presets (`vit_base`, `vit_small`) are their values over the one constructor (`presets.preset`); spec:
`variants.md`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from lit_vir.checks import ConfigError, check_choice, check_divides, check_probabilities, check_range
from lit_vir.models.drop_path import linear_drop_path_rates
from lit_vir.models.presets import preset

__all__ = [
    "Attention",
    "Block",
    "Mlp",
    "ViTFrame",
    "VisionTransformer",
    "vit_base",
    "vit_small",
]


class Mlp(nn.Module):
    """Linear → GELU → Dropout → Linear → Dropout."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(tokens)))))


class Attention(nn.Module):
    """Multi-head self-attention with fused q/k/v, on PyTorch's scaled-dot-product kernel.

    `forward` is the fused path. The same function, step by step, for variants and wrappers that need the
    intermediate tensors (ReViT mixes the logits; a quantiser rounds q, k, the softmax output and v):

        q, k, v = split_heads(x)                          (B, H, T, d) each
        S = scores(q, k)          = q kᵀ/√d               (B, H, T, T)
        A = softmax(S)                                    (B, H, T, T)
        out = merge_heads(weighted_values(A, v))          dropout(A)·V → proj → (B, T, D)
    """

    def __init__(self, dim: int, num_heads: int, attention_dropout: float = 0.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attention_dropout = attention_dropout
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def split_heads(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v, each (B, heads, T, head_dim)."""
        batch, length, _ = tokens.shape
        qkv = self.qkv(tokens).reshape(batch, length, 3, self.num_heads, self.head_dim)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The pre-softmax logits S = q kᵀ/√d: (B, heads, T, T)."""
        return (q @ k.transpose(-2, -1)) * self.scale

    def softmax(self, scores: torch.Tensor) -> torch.Tensor:
        """The attention weights A = softmax(S) over the keys: (B, heads, T, T), rows sum to 1."""
        return scores.softmax(dim=-1)

    def weighted_values(self, weights: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """dropout(A)·V: (B, heads, T, head_dim)."""
        return F.dropout(weights, self.attention_dropout, self.training) @ v

    def merge_heads(self, values: torch.Tensor) -> torch.Tensor:
        """(B, heads, T, head_dim) → projected (B, T, D)."""
        return self.proj_drop(self.proj(values.transpose(1, 2).flatten(2)))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split_heads(tokens)
        dropout = self.attention_dropout if self.training else 0.0
        return self.merge_heads(F.scaled_dot_product_attention(q, k, v, dropout_p=dropout))


class Block(nn.Module):
    """Pre-norm Transformer block: x += DropPath(MHSA(LN x)); x += DropPath(MLP(LN x)).

    `attn_layer` and `mlp_layer` are the classes built for the two branches (timm's convention), called as
    `attn_layer(dim, num_heads, attention_dropout, dropout)` and `mlp_layer(dim, hidden_dim, dropout)`.
    `drop_path` is the stochastic-depth rate (Huang et al. 2016): in training each branch's output is
    dropped for a whole sample with this probability and kept ones are scaled by 1/(1 − rate); in
    evaluation, and at rate 0, the branch is the identity (torchvision's `StochasticDepth`, mode "row").
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        *,
        drop_path: float = 0.0,
        attn_layer: type[Attention] = Attention,
        mlp_layer: type[Mlp] = Mlp,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attn_layer(dim, num_heads, attention_dropout, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp_layer(dim, int(dim * mlp_ratio), dropout)
        self.drop_path = StochasticDepth(drop_path, mode="row")  # no parameters: the state dict is unchanged

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens + self.drop_path(self.attn(self.norm1(tokens)))
        return tokens + self.drop_path(self.mlp(self.norm2(tokens)))


class ViTFrame(nn.Module):
    """What every ViT of this package has around its blocks: patch embedding (stride-P convolution) → class
    token + learned positions (+ dropout) → blocks → LN → pooling (class token or patch mean) → Linear.

    Not a model a config names: `VisionTransformer` and `SlimViT` check their own options, then pass their
    blocks as `build_blocks`. It is called after the patch embedding and tokens are made and before the norm
    and head, so every ViT draws its initial weights in one order whichever class builds it. `num_positions`
    is the sequence the position embedding covers (default: the class token and every patch).
    """

    def __init__(
        self,
        num_classes: int,
        image_size: int,
        in_channels: int,
        patch_size: int,
        embed_dim: int,
        dropout: float,
        drop_path_rate: float,
        pooling: Literal["token", "mean"],
        build_blocks: Callable[[], Iterable[nn.Module]],
        num_positions: int | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_range(owner, "num_classes", num_classes, low=1)
        check_divides(owner, "patch_size (P)", patch_size, image_size, "image_size")
        check_probabilities(owner, dropout=dropout, drop_path_rate=drop_path_rate)
        check_choice(owner, "pooling", pooling, ("token", "mean"))
        num_patches = (image_size // patch_size) ** 2

        self.num_classes = num_classes
        self.pooling = pooling
        self.drop_path_rate = drop_path_rate
        self.patch_embed = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_positions or num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(build_blocks())
        self.depth = len(self.blocks)
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """timm's ViT initialisation: truncated normal (std .02) for tokens and Linear weights (a fully pruned
        layer of a slim ViT has no weights to draw)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.weight.numel():
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameters exempt from weight decay besides biases and norms (timm's convention): the position
        embedding and the class token, which decay would pull towards 0 for no regularising benefit."""
        return {"pos_embed", "cls_token"}

    def class_and_patches(self, images: torch.Tensor) -> torch.Tensor:
        """The class token followed by the patch tokens, before positions: (B, 1+T, D)."""
        patches = self.patch_embed(images).flatten(2).transpose(1, 2)  # (B, T, D)
        return torch.cat([self.cls_token.expand(patches.shape[0], -1, -1), patches], dim=1)

    def mean_of_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Mean pooling of the final patch tokens (B, T', D) → (B, D); the slimming models weight it."""
        return patches.mean(dim=1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features[:, 0] if self.pooling == "token" else self.mean_of_patches(features[:, 1:])
        return self.head(pooled)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))


class VisionTransformer(ViTFrame):
    """ViT for small images, trained from scratch; `forward_features` keeps every token for analysis.

    Variants change the blocks, not this constructor: the class attribute `block_fn` is the block class,
    built per block as `block_fn(embed_dim, num_heads, mlp_ratio, dropout, attention_dropout, drop_path=r_l)` (timm's
    `block_fn`; e.g. `functools.partial(Block, attn_layer=...)` changes only the attention). It is a class
    attribute rather than a keyword so that configs never see it. A subclass sets it, takes its own
    keywords and forwards the rest (`**kwargs`) here, so this signature is written once.
    """

    block_fn: Callable[..., Block] = Block

    def __init__(
        self,
        num_classes: int = 10,
        image_size: int = 32,
        in_channels: int = 3,
        *,
        patch_size: int = 4,  # P
        embed_dim: int = 768,  # D
        depth: int = 12,  # L: blocks
        num_heads: int = 12,  # H
        mlp_ratio: float = 4.0,  # the MLP's width over D
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        pooling: Literal["token", "mean"] = "token",
    ) -> None:
        """`drop_path_rate`: stochastic depth, timm's rule — block l of L drops its branches with rate
        r_l = drop_path_rate · l/(L − 1), rising linearly from 0 at the first block (0 everywhere: off)."""
        owner = type(self).__name__
        check_range(owner, "depth (L)", depth, low=1)
        check_range(owner, "num_heads", num_heads, low=1)
        if embed_dim % num_heads:
            raise ConfigError(f"{owner}: embed_dim = {embed_dim} is not divisible by num_heads = {num_heads}.")
        check_range(owner, "mlp_ratio", mlp_ratio, low=0, low_inclusive=False)
        check_probabilities(owner, attention_dropout=attention_dropout)

        def blocks() -> Iterator[Block]:
            for rate in linear_drop_path_rates(drop_path_rate, depth):
                yield self.block_fn(embed_dim, num_heads, mlp_ratio, dropout, attention_dropout, drop_path=rate)

        super().__init__(
            num_classes, image_size, in_channels, patch_size, embed_dim, dropout, drop_path_rate, pooling, blocks
        )

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens with the class token prepended and positions added: (B, 1+T, D)."""
        return self.pos_drop(self.class_and_patches(images) + self.pos_embed)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.tokens(images)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)  # (B, 1+T, D)


@preset(VisionTransformer, patch_size=4, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0)
def vit_base() -> VisionTransformer:
    """ViT-Base width (D 768, 12 heads, MLP 3072): the paper's comparison at depth 1/3/6/12."""


@preset(VisionTransformer, patch_size=4, embed_dim=192, depth=9, num_heads=12, mlp_ratio=2.0)
def vit_small() -> VisionTransformer:
    """The from-scratch anchor: D 192, 12 heads, MLP ×2, depth 9, patch 4 (≈2.7M parameters)."""
