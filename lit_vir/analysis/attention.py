"""Attention collapse: how alike the attention maps of consecutive Transformer blocks are.

Deep ViTs tend to repeat one attention pattern block after block (Zhou et al. 2021, DeepViT, call the
measure "cross-layer similarity"); ReViT's residual attention is meant to keep the maps apart. The
same two functions serve the baseline ViT and ReViT:

    maps = attention_maps(model, images)           # (L, B, H, T+1, T+1), rows sum to 1
    cross_layer_similarity(maps)                   # (L−1,): block l vs block l+1

Plain torch on plain tensors; call under `torch.no_grad()` unless gradients are wanted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit_vir.models.vit import VisionTransformer

__all__ = ["attention_maps", "cross_layer_similarity", "mean_cross_layer_similarity"]


def attention_maps(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Every block's softmax attention for `images` (B, C, H, W): a tensor (L, B, heads, T+1, T+1).

    A model with its own `attention_maps(images)` (ReViT: the maps over its mixed logits) is asked for
    them. The baseline `VisionTransformer` runs its unchanged forward block by block, and beside each
    block recomputes softmax(q kᵀ/√d) from that block's own q and k — the map its fused attention used.
    """
    if hasattr(model, "attention_maps"):
        return model.attention_maps(images)
    if type(model) is not VisionTransformer:
        raise TypeError(
            f"attention_maps: {type(model).__name__} has no attention_maps(images) method and is not the baseline "
            "VisionTransformer, whose blocks this function knows how to read."
        )
    tokens, maps = model.tokens(images), []
    for block in model.blocks:
        q, k, _ = block.attn.split_heads(block.norm1(tokens))  # (B, H, T+1, d)
        maps.append(((q @ k.transpose(-2, -1)) * block.attn.scale).softmax(dim=-1))  # (B, H, T+1, T+1)
        tokens = block(tokens)
    return torch.stack(maps)


def cross_layer_similarity(maps: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of consecutive blocks' maps, one value per pair (l, l+1): shape (L−1,).

    For each image, head and query token i, cos(A_l[i, :], A_{l+1}[i, :]) compares where token i looks in
    the two blocks; the value is the mean over images, heads and queries. 1 means the same pattern again.
    """
    if maps.dim() != 5:
        raise ValueError(f"cross_layer_similarity: expected maps of shape (L, B, H, N, N), got {tuple(maps.shape)}.")
    return F.cosine_similarity(maps[:-1], maps[1:], dim=-1).mean(dim=(1, 2, 3))  # (L−1,)


def mean_cross_layer_similarity(maps: torch.Tensor) -> float:
    """The mean of `cross_layer_similarity` over all consecutive pairs: one number per model."""
    if maps.shape[0] < 2:
        raise ValueError(f"mean_cross_layer_similarity: needs at least 2 blocks' maps, got {maps.shape[0]}.")
    return cross_layer_similarity(maps).mean().item()
