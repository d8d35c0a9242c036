"""ReViT (Diko et al. 2024): the ViT baseline whose attention carries a residual of the previous block's logits.

Block l computes its pre-softmax logits S_l = q kᵀ/√d as the baseline does, then mixes in the logits the
previous block used:

    S_l ← α·S_l + (1 − α)·R_{l−1},    R_l = S_l (the mixed logits are carried on),    out = softmax(S_l)·V

with one scalar α shared by every block (learnable, initialised 0.5; or fixed). Block 0 is unmixed. The
residual keeps later blocks' attention from collapsing onto the same pattern (compare the two with
`lit_vir.analysis.attention.cross_layer_similarity`). Everything else — patch embedding, class token,
positions, MLPs, the head — is the baseline's: `ReViT` subclasses `VisionTransformer` and runs the
baseline's own blocks (the same parameters and state-dict keys, plus `alpha`), so a ViT checkpoint
loads into a ReViT and α = 1 gives back the ViT. Classification reads the class token by default
(`pooling="token"`, the baseline's) or the mean of the patch tokens (`pooling="mean"`), which is what the
official ReViT-B does (`cls_embed_on: False`, github.com/ADiko1997/ReViT config/config-ReViT-B.yaml; that model
has no class token at all, here it stays in the sequence unread: configs/model/revit_mean_pooling.yaml).
α follows the official convention (model/attention.py: attn = α·attn + (1 − α)·attn_res): α = 1 is the
plain ViT, α = 0 repeats block 0's logits in every block.
Shapes: B batch, T+1 tokens (class token first), H heads, d head width.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lit_vir.checks import check_range
from lit_vir.models.presets import preset
from lit_vir.models.vit import Block, VisionTransformer, vit_base, vit_small

__all__ = ["ReViT", "ResidualBlock", "revit_base", "revit_small"]


class ResidualBlock(Block):
    """The baseline's block (same layers, same `Attention`) whose attention logits carry a residual:
    S_l = α·S_l + (1 − α)·R_{l−1} before the softmax, on the attention's own steps (`scores`, `softmax`,
    `weighted_values`), so whatever wraps `Attention` (a quantiser) wraps ReViT's attention too."""

    def forward(
        self, tokens: torch.Tensor, residual: torch.Tensor | None = None, alpha: torch.Tensor | float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T+1, D), R_{l−1} or None (block 0) → (tokens out, the mixed logits R_l, softmax map)."""
        attention = self.attn
        q, k, v = attention.split_heads(self.norm1(tokens))  # (B, H, T+1, d) each
        logits = attention.scores(q, k)  # (B, H, T+1, T+1)
        if residual is not None:
            logits = alpha * logits + (1 - alpha) * residual
        weights = attention.softmax(logits)
        tokens = tokens + self.drop_path(attention.merge_heads(attention.weighted_values(weights, v)))  # (B, T+1, D)
        tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
        return tokens, logits, weights


class ReViT(VisionTransformer):
    """ViT with residual attention: S_l = α·S_l + (1 − α)·S_{l−1} before each softmax (block 0 unmixed).

    Takes `alpha` (α's initial value, in [0, 1]) and `learn_alpha` (train α, or keep it fixed); every other
    argument is the baseline's (`VisionTransformer`), with `ResidualBlock` as its block. α is one scalar
    parameter shared by all blocks and is not clamped while it learns.
    """

    block_fn = ResidualBlock

    def __init__(self, *args: Any, alpha: float = 0.5, learn_alpha: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_range(type(self).__name__, "alpha (α)", alpha, low=0, high=1)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)), requires_grad=learn_alpha)

    def no_weight_decay(self) -> set[str]:
        """The baseline's, plus α (the official ReViT exempts it: a mixing weight, not a feature weight)."""
        return super().no_weight_decay() | {"alpha"}

    def residual_block(
        self, block: ResidualBlock, tokens: torch.Tensor, residual: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One block with this model's α: (tokens out, logits R_l to carry on, softmax map)."""
        return block(tokens, residual, self.alpha)

    def run_blocks(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Tokens after the last block (B, T+1, D) and each block's attention map (B, H, T+1, T+1)."""
        tokens, residual, maps = self.tokens(images), None, []
        for block in self.blocks:
            tokens, residual, weights = self.residual_block(block, tokens, residual)
            maps.append(weights)
        return tokens, maps

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        tokens, _ = self.run_blocks(images)
        return self.norm(tokens)  # (B, T+1, D)

    def attention_maps(self, images: torch.Tensor) -> torch.Tensor:
        """Each block's softmax(S_l) over the mixed logits, before attention dropout: (L, B, H, T+1, T+1)."""
        _, maps = self.run_blocks(images)
        return torch.stack(maps)


@preset(ReViT, **vit_base.defaults)
def revit_base() -> ReViT:
    """ReViT at `vit_base`'s width (D 768, 12 heads, MLP 3072), the width of the paper's ViT comparison."""


@preset(ReViT, **vit_small.defaults)
def revit_small() -> ReViT:
    """ReViT on `vit_small` (D 192, 12 heads, MLP ×2, depth 9, patch 4): ≈2.7M parameters + α."""
