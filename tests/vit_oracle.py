"""timm's `VisionTransformer` as the independent reference for the ViT family's forward pass (tests only)."""

from __future__ import annotations

from functools import partial

import torch
from timm.models.vision_transformer import VisionTransformer as TimmViT
from torch import nn

from lit_vir.models.vit import VisionTransformer


def timm_twin(model: VisionTransformer) -> TimmViT:
    """A timm ViT of `model`'s architecture holding `model`'s weights (the state dict mapped by name).

    timm's options that match ours: LayerNorm with eps 1e-5 (ours: PyTorch's default), the final norm on
    every token before pooling (`fc_norm=False`, timm's default for "avg" is to norm after pooling), "avg"
    pooling over the patch tokens only (`pool_include_prefix=False`)."""
    embed_dim = model.cls_token.shape[-1]
    patch_size = model.patch_embed.kernel_size[0]
    twin = TimmViT(
        img_size=int((model.pos_embed.shape[1] - 1) ** 0.5) * patch_size,
        patch_size=patch_size,
        in_chans=model.patch_embed.in_channels,
        num_classes=model.num_classes,
        global_pool={"token": "token", "mean": "avg"}[model.pooling],
        embed_dim=embed_dim,
        depth=model.depth,
        num_heads=model.blocks[0].attn.num_heads,
        mlp_ratio=model.blocks[0].mlp.fc1.out_features / embed_dim,
        qkv_bias=True,
        fc_norm=False,
        pool_include_prefix=False,
        norm_layer=partial(nn.LayerNorm, eps=1e-5),
    ).to(model.cls_token.dtype)
    renamed = {"patch_embed.weight": "patch_embed.proj.weight", "patch_embed.bias": "patch_embed.proj.bias"}
    extras = extra_keys(model)
    weights = {renamed.get(name, name): value for name, value in model.state_dict().items() if name not in extras}
    twin.load_state_dict(weights, strict=True)
    return twin.eval()


def extra_keys(model: VisionTransformer) -> set[str]:
    """A variant's parameters that the baseline ViT does not have (ReViT's α, ViT-Slim's masks)."""
    return {"alpha", "attention_mask", "mlp_mask", "token_logit"} & set(model.state_dict())


def spread(model: nn.Module, seed: int = 0) -> nn.Module:
    """float64 weights far from the near-zero init, so attention is far from uniform and logits are O(1)."""
    generator = torch.Generator().manual_seed(seed)
    model = model.double()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name not in extra_keys(model):
                parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    return model.eval()
