"""MobileViT (Mehta & Rastegari, ICLR 2022) with the ExMobileViT classifier extension (Yang et al., 2023).

MobileViT is a MobileNetV2 whose last three stages end in a MobileViT block:

    stem 3×3 conv → MV2 → 3× MV2 → [MV2↓, MobileViT] × 3 → 1×1 conv → global average pool → Linear

A MobileViT block convolves locally (3×3, then 1×1 to the transformer width d), unfolds the map into
p×p patches and lets each pixel position attend across all patches (L pre-norm transformer layers),
folds back, projects to C and fuses with its input (3×3 conv over [x ; y]).

ExMobileViT (`extension`) also pools the outputs of the first two MobileViT blocks through 1×1 conv +
BN + SiLU to c1 and c2 channels and concatenates them with the c3 final features into a wider,
bias-free classifier: the early, more local features reach the decision directly. Spec: `variants.md`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from lit_vir.checks import ConfigError, check_choice, check_counts, check_probabilities, check_range
from lit_vir.models.drop_path import linear_drop_path_rates
from lit_vir.models.presets import preset
from lit_vir.models.vit import Block

__all__ = [
    "EXMOBILEVIT_BACKBONE",
    "EXTENSION_WIDTHS",
    "MOBILEVIT_WIDTHS",
    "ConvNormAct",
    "InvertedResidual",
    "MobileViT",
    "MobileViTBlock",
    "TransformerLayer",
    "exmobilevit_s",
    "mobilevit_s",
    "mobilevit_xs",
    "mobilevit_xxs",
]

Extension = Literal[576, 640, 928]

# ExMobileViT's named classifiers: (c1, c2, c3) = pooled widths of MobileViT block 1, block 2 and the
# final 1×1 conv; the name is the classifier's input width c1 + c2 + c3.
EXTENSION_WIDTHS: dict[int, tuple[int, int, int]] = {
    576: (32, 64, 480),
    640: (32, 128, 480),
    928: (128, 160, 640),
}

# The ExMobileViT repository's MobileViT backbone (its models/basic_block.py), where it differs from cvnets'.
EXMOBILEVIT_BACKBONE: dict = dict(
    num_heads=4,
    head_dim=8,
    mlp_ratio=(2.0, 4.0, 4.0),
    qkv_bias=False,
    conv_in_norm_act=True,
    final_norm=False,
    dropout=0.0,
    head_dropout=0.0,
)

# The paper's widths (its Table 4), one row per size: stem + 5 stages (`channels`), transformer widths d,
# the final 1×1 conv, the MV2 expansion and the transformer dropout (cvnets configs). The transformer
# depths L are 2, 4, 3 in all three sizes (the constructor's default).
MOBILEVIT_WIDTHS: dict[str, dict] = {
    name: dict(channels=channels, transformer_dims=dims, final_dim=final_dim, expand_ratio=expand, dropout=dropout)
    for name, channels, dims, final_dim, expand, dropout in (
        ("xxs", (16, 16, 24, 48, 64, 80), (64, 80, 96), 320, 2, 0.05),
        ("xs", (16, 32, 48, 64, 80, 96), (96, 120, 144), 384, 4, 0.1),
        ("s", (16, 32, 64, 96, 128, 160), (144, 192, 240), 640, 4, 0.1),
    )
}


class ConvNormAct(nn.Sequential):
    """k×k convolution (no bias) → BatchNorm → SiLU (`act=False`: no SiLU), 'same' padding."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1, act: bool = True
    ) -> None:
        layers = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        super().__init__(*layers, *([nn.SiLU()] if act else []))


class InvertedResidual(nn.Module):
    """MV2 (MobileNetV2): 1×1 expand ×e → 3×3 depthwise (stride s) → 1×1 linear projection, with an
    identity shortcut when the shape is kept (stride 1, same width).

    Only a block with the shortcut has a `drop_path` (stochastic depth drops a residual branch; without
    the shortcut there is none, and dropping the block would zero the image's map).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        expand = [ConvNormAct(in_channels, hidden, 1)] if expand_ratio != 1 else []
        self.block = nn.Sequential(
            *expand,
            ConvNormAct(hidden, hidden, 3, stride, groups=hidden),
            ConvNormAct(hidden, out_channels, 1, act=False),
        )
        self.use_shortcut = stride == 1 and in_channels == out_channels
        self.drop_path = StochasticDepth(0.0, "row") if self.use_shortcut else None

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W)
        mapped = self.block(feature_map)  # (B, C_out, H/s, W/s)
        return feature_map + self.drop_path(mapped) if self.use_shortcut else mapped


class TransformerLayer(Block):
    """ViT's pre-norm block with MobileViT's Swish (SiLU) in the feed-forward network (cvnets).

    ViT's `Mlp` also drops out after the activation, where cvnets has a separate `ffn_dropout` (0).
    `head_dim` None gives d / heads per head (cvnets); the ExMobileViT repository uses 4 heads of 8, so
    its heads span 32 ≠ d, and q/k/v without bias (`qkv_bias` False).
    Stochastic depth (`drop_path`) drops both residual branches per image: the unfolded batch holds
    `patch_area` = p² sequences of each image, which are dropped together.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        dropout: float,
        attention_dropout: float,
        patch_area: int,
        *,
        head_dim: int | None = None,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__(dim, num_heads, mlp_ratio, dropout, attention_dropout)
        self.mlp.act = nn.SiLU()
        inner = num_heads * (head_dim or dim // num_heads)  # the width the heads span
        if inner != dim or not qkv_bias:  # rebuilt only then: cvnets' layers keep ViT's initial weights
            self.attn.head_dim, self.attn.scale = inner // num_heads, (inner // num_heads) ** -0.5
            self.attn.qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
            self.attn.proj = nn.Linear(inner, dim)
        self.patch_area = patch_area
        self.drop_path = StochasticDepth(0.0, "row")

    def drop(self, branch: torch.Tensor) -> torch.Tensor:
        """Stochastic depth per image on (B·p², N, d): one draw for the p² sequences of an image."""
        return self.drop_path(branch.unflatten(0, (-1, self.patch_area))).flatten(0, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B·p², N, d)
        tokens = tokens + self.drop(self.attn(self.norm1(tokens)))
        return tokens + self.drop(self.mlp(self.norm2(tokens)))


class MobileViTBlock(nn.Module):
    """Local 3×3 conv → 1×1 to d → unfold p×p patches → L transformer layers + LN → fold → 1×1 to C
    → fuse: 3×3 conv over [x ; y]. Map (B, C, H, W) → (B, C, H, W); H and W must be multiples of p.

    Unfolding puts the p² pixels of a patch in the batch and the H·W/p² patches in the sequence, so a
    pixel attends to the same-position pixel of every patch: global reach at 1/p² of the cost.

    cvnets' 1×1 to d is a plain conv and an LN follows the layers; the ExMobileViT repository's block
    has 1×1 conv + BN + SiLU (`conv_in_norm_act`) and no LN (`final_norm` False). Its fusion reads
    [y ; x], this one [x ; y]: the same function with the fusion's input channels in the other order.
    """

    def __init__(
        self,
        channels: int,
        dim: int,
        depth: int,
        *layer_args: Any,
        patch_size: int,
        conv_in_norm_act: bool = False,
        final_norm: bool = True,
        **layer_options: Any,
    ) -> None:
        """`layer_args` and `layer_options` are each `TransformerLayer`'s own (num_heads, mlp_ratio, dropout,
        attention_dropout, head_dim, qkv_bias), so the layer's signature is written once; its `patch_area`
        is p² from `patch_size`."""
        super().__init__()
        self.patch_size = patch_size
        self.conv_local = ConvNormAct(channels, channels, 3)
        self.conv_in = ConvNormAct(channels, dim, 1) if conv_in_norm_act else nn.Conv2d(channels, dim, 1, bias=False)
        layers = (TransformerLayer(dim, *layer_args, patch_area=patch_size**2, **layer_options) for _ in range(depth))
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(dim) if final_norm else nn.Identity()
        self.conv_out = ConvNormAct(dim, channels, 1)
        self.fusion = ConvNormAct(2 * channels, channels, 3)

    def unfold(self, feature_map: torch.Tensor) -> torch.Tensor:
        """(B, d, H, W) → (B·p², H·W/p², d): one sequence of patches per pixel position in the patch."""
        batch, dim, height, width = feature_map.shape
        p = self.patch_size
        patches = feature_map.reshape(batch, dim, height // p, p, width // p, p)
        patches = patches.permute(0, 3, 5, 2, 4, 1)  # (B, p, p, H/p, W/p, d)
        return patches.reshape(batch * p * p, (height // p) * (width // p), dim)

    def fold(self, patches: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Inverse of `unfold`: (B·p², H·W/p², d) → (B, d, H, W)."""
        p = self.patch_size
        dim = patches.shape[-1]
        feature_map = patches.reshape(-1, p, p, height // p, width // p, dim)
        feature_map = feature_map.permute(0, 5, 3, 1, 4, 2)  # (B, d, H/p, p, W/p, p)
        return feature_map.reshape(-1, dim, height, width)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        height, width = feature_map.shape[-2:]
        local = self.conv_in(self.conv_local(feature_map))  # (B, d, H, W)
        patches = self.unfold(local)  # (B·p², N, d)
        for layer in self.layers:
            patches = layer(patches)
        mixed = self.conv_out(self.fold(self.norm(patches), height, width))  # (B, C, H, W)
        return self.fusion(torch.cat([feature_map, mixed], dim=1))  # (B, C, H, W)


class MobileViT(nn.Module):
    """MobileViT for small images, optionally with the ExMobileViT classifier (`extension`).

    Stride schedule. ImageNet MobileViT strides by 2 in the stem and in stages 2-5 (total 32: its
    MobileViT blocks see 32², 16², 8² at 256×256); at 32×32 that leaves 4², 2², 1² maps and a last
    block that cannot unfold 2×2 patches. `output_stride` 8 (the default for images up to 64 pixels)
    drops the stride of the stem and of the MV2-only stage 2, so at 32×32 the blocks see 16², 8², 4²
    and the final map is 4×4. Inputs are zero-padded (centred) to a multiple of output_stride · p: 28×28
    to 32×32, 8×8 to 16×16; `output_stride` 32 keeps the ImageNet schedule (224 pads to 256).

    Extension. `extension` names ExMobileViT's classifier (576, 640 or 928; see `EXTENSION_WIDTHS`) or
    gives (c1, c2, c3). Our reading of c3: it is the width of the final 1×1 conv + BN + SiLU, i.e. of the
    pooled last-stage features, replacing `final_dim`. For MobileViT-S (final 640), "928" keeps 640 and
    adds 128 + 160 early channels (+5.7% parameters at 1000 classes, the paper's "about 5%"); "576" and
    "640" shrink the final conv to 480 so the classifier reads 576 or 640 features, at most S's 640 —
    a comparison at (nearly) the same classifier width. On XS (384) or XXS (320), c3 widens that
    final conv instead. The extended classifier is bias-free, the plain one has a bias.
    The branches pool by a global mean. The official code pools them with `AvgPool2d(25)` and
    `AvgPool2d(9)` (stride = window) on the 32² and 16² maps of a 256-pixel image, so they read only the
    top-left 25² and 9² pixels; the global mean is the fix of that window (its final pooling,
    `AvgPool2d(H/32)`, is global).

    Backbone. The defaults are Apple's cvnets MobileViT (`mobilevit_s`, `configs/model/mobilevit.yaml`).
    The ExMobileViT repository's MobileViT differs (`EXMOBILEVIT_BACKBONE`, `exmobilevit_s`,
    `configs/model/exmobilevit_backbone.yaml`): 4 heads of width 8 (`head_dim`), MLP ratios 2, 4, 4
    (`mlp_ratio` per MobileViT block; cvnets 2, 2, 2), q/k/v without bias, 1×1 conv + BN + SiLU before
    the transformer, no LN after it (see `MobileViTBlock`), no dropout, and no classifier dropout
    (`head_dropout` 0.1 is cvnets' `classifier_dropout`). Its plain (non-extended) classifier is
    bias-free too; here it keeps cvnets' bias (+`num_classes` parameters).

    Stochastic depth. `drop_path_rate` is the rate of the deepest residual block; the i-th of the n
    residual blocks (`residual_blocks`: the MV2 blocks with an identity shortcut and every transformer
    layer, in depth order) drops its branch with rate · i/(n − 1), timm's linear rule. Apple's cvnets
    MobileViT has no stochastic depth; timm's gives each MV2 block and each MobileViT block one step of the
    schedule (all layers of a MobileViT block share it), drops MV2 blocks without a shortcut too (their
    whole output) and draws per unfolded sequence, not per image. Here only residual branches are
    dropped, each layer has its own step and an image's p² sequences are dropped together.
    """

    def __init__(
        self,
        num_classes: int = 10,
        image_size: int = 32,
        in_channels: int = 3,
        *,
        channels: tuple[int, ...] = (16, 32, 64, 96, 128, 160),
        transformer_dims: tuple[int, ...] = (144, 192, 240),
        transformer_depths: tuple[int, ...] = (2, 4, 3),
        final_dim: int = 640,
        expand_ratio: int = 4,
        num_heads: int = 4,
        head_dim: int | None = None,
        mlp_ratio: float | tuple[float, float, float] = 2.0,
        qkv_bias: bool = True,
        conv_in_norm_act: bool = False,
        final_norm: bool = True,
        patch_size: int = 2,
        output_stride: Literal[8, 32] | None = None,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        head_dropout: float = 0.1,
        extension: Extension | tuple[int, int, int] | None = None,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_counts(owner, num_classes=num_classes, image_size=image_size, in_channels=in_channels)
        check_widths(owner, "channels", channels, 6)
        check_widths(owner, "transformer_dims", transformer_dims, 3)
        check_widths(owner, "transformer_depths", transformer_depths, 3, low=0)
        check_counts(owner, final_dim=final_dim, expand_ratio=expand_ratio, num_heads=num_heads)
        if head_dim is None:
            for dim in transformer_dims:
                if dim % num_heads:
                    raise ConfigError(
                        f"{owner}: transformer_dims = {tuple(transformer_dims)} has {dim}, not divisible by "
                        f"num_heads = {num_heads}; change num_heads or give head_dim (each head's width)."
                    )
        else:
            check_range(owner, "head_dim", head_dim, low=1)
        mlp_ratios = (mlp_ratio,) * 3 if isinstance(mlp_ratio, (int, float)) else tuple(mlp_ratio)
        if len(mlp_ratios) != 3 or any(ratio <= 0 for ratio in mlp_ratios):
            raise ConfigError(
                f"{owner}: mlp_ratio = {mlp_ratio!r} must be a number > 0 or three of them (one per MobileViT block)."
            )
        check_range(owner, "patch_size", patch_size, low=1)
        output_stride = (8 if image_size <= 64 else 32) if output_stride is None else output_stride
        check_choice(owner, "output_stride", output_stride, (8, 32))
        check_probabilities(owner, dropout=dropout, attention_dropout=attention_dropout, head_dropout=head_dropout)
        check_probabilities(owner, drop_path_rate=drop_path_rate)
        extension_widths = resolve_extension(owner, extension)

        self.num_classes = num_classes
        self.output_stride = output_stride
        self.patch_size = patch_size
        self.extension_widths = extension_widths
        self.padded_size = math.ceil(image_size / (output_stride * patch_size)) * output_stride * patch_size
        early_stride = 1 if output_stride == 8 else 2  # stem and stage 2
        stem, w1, w2, w3, w4, w5 = channels
        transformer = dict(
            num_heads=num_heads,
            patch_size=patch_size,
            dropout=dropout,
            attention_dropout=attention_dropout,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            conv_in_norm_act=conv_in_norm_act,
            final_norm=final_norm,
        )

        self.stem = ConvNormAct(in_channels, stem, 3, early_stride)
        self.stage1 = nn.Sequential(InvertedResidual(stem, w1, 1, expand_ratio))
        self.stage2 = nn.Sequential(
            InvertedResidual(w1, w2, early_stride, expand_ratio),
            InvertedResidual(w2, w2, 1, expand_ratio),
            InvertedResidual(w2, w2, 1, expand_ratio),
        )
        self.stage3, self.stage4, self.stage5 = (
            nn.Sequential(
                InvertedResidual(previous, width, 2, expand_ratio),
                MobileViTBlock(width, dim, depth, mlp_ratio=ratio, **transformer),
            )
            for previous, width, dim, depth, ratio in zip(
                (w2, w3, w4), (w3, w4, w5), transformer_dims, transformer_depths, mlp_ratios, strict=True
            )
        )
        final_width = final_dim if extension_widths is None else extension_widths[2]
        self.final_conv = ConvNormAct(w5, final_width, 1)
        if extension_widths is None:
            self.branches = None
            self.head = nn.Linear(final_width, num_classes)
        else:
            self.branches = nn.ModuleList(
                [ConvNormAct(w3, extension_widths[0], 1), ConvNormAct(w4, extension_widths[1], 1)]
            )
            self.head = nn.Linear(sum(extension_widths), num_classes, bias=False)
        self.head_drop = nn.Dropout(head_dropout)
        residual = self.residual_blocks()
        for block, rate in zip(residual, linear_drop_path_rates(drop_path_rate, len(residual)), strict=True):
            block.drop_path.p = rate

    def residual_blocks(self) -> list[InvertedResidual | TransformerLayer]:
        """The blocks with a residual branch, in depth order: MV2 blocks with a shortcut, transformer layers."""
        return [
            module
            for module in self.modules()
            if isinstance(module, TransformerLayer) or (isinstance(module, InvertedResidual) and module.use_shortcut)
        ]

    def no_weight_decay(self) -> set[str]:
        """timm's convention: parameters to keep out of weight decay beyond biases, norms and other 1-d
        ones. None here: MobileViT has no position embedding and no class token."""
        return set()

    def pad(self, images: torch.Tensor) -> torch.Tensor:
        """Zero-pad (B, C, H, W), centred, to the next multiple of output_stride · patch_size."""
        multiple = self.output_stride * self.patch_size
        height, width = images.shape[-2:]
        extra_h, extra_w = -height % multiple, -width % multiple
        if not (extra_h or extra_w):
            return images
        return F.pad(images, (extra_w // 2, extra_w - extra_w // 2, extra_h // 2, extra_h - extra_h // 2))

    def forward_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Outputs of MobileViT blocks 1 and 2 and of the final 1×1 conv; at 32×32 with `channels`
        (·, ·, ·, W3, W4, ·): (B, W3, 16, 16), (B, W4, 8, 8), (B, final_dim or c3, 4, 4)."""
        feature_map = self.stage2(self.stage1(self.stem(self.pad(images))))  # (B, W2, H', W'), H' = H/s²
        first = self.stage3(feature_map)  # (B, W3, H'/2, W'/2)
        second = self.stage4(first)  # (B, W4, H'/4, W'/4)
        return first, second, self.final_conv(self.stage5(second))  # last: (B, final, H'/8, W'/8)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The pooled vector the classifier reads: (B, final_dim), or (B, c1 + c2 + c3) with the extension."""
        first, second, last = self.forward_maps(images)
        pooled = last.mean(dim=(2, 3))  # (B, final_dim or c3)
        if self.branches is None:
            return pooled
        early = [
            branch(feature_map).mean(dim=(2, 3))
            for branch, feature_map in zip(self.branches, (first, second), strict=True)
        ]
        return torch.cat([*early, pooled], dim=1)  # (B, c1 + c2 + c3)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_drop(features))  # (B, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))


def check_widths(owner: str, field: str, values: tuple[int, ...], length: int, low: int = 1) -> None:
    """`values` must hold `length` integers ≥ `low`."""
    values = tuple(values)
    if len(values) != length or any(not isinstance(value, int) or value < low for value in values):
        raise ConfigError(f"{owner}: {field} = {values!r} must be {length} integers ≥ {low}.")


def resolve_extension(owner: str, extension: int | tuple[int, int, int] | None) -> tuple[int, int, int] | None:
    """(c1, c2, c3) for a named ExMobileViT classifier or explicit widths; None without the extension."""
    if extension is None:
        return None
    if isinstance(extension, int):
        check_choice(owner, "extension", extension, tuple(EXTENSION_WIDTHS))
        return EXTENSION_WIDTHS[extension]
    check_widths(owner, "extension", extension, 3)
    return tuple(extension)


@preset(MobileViT, **MOBILEVIT_WIDTHS["xxs"])
def mobilevit_xxs() -> MobileViT:
    """MobileViT-XXS: 1.3M parameters at 1000 classes (paper), MV2 expansion 2."""


@preset(MobileViT, **MOBILEVIT_WIDTHS["xs"])
def mobilevit_xs() -> MobileViT:
    """MobileViT-XS: 2.3M parameters at 1000 classes (paper)."""


@preset(MobileViT, **MOBILEVIT_WIDTHS["s"])
def mobilevit_s() -> MobileViT:
    """MobileViT-S: 5.6M parameters at 1000 classes (paper); the backbone ExMobileViT extends."""


@preset(MobileViT, **(MOBILEVIT_WIDTHS["s"] | EXMOBILEVIT_BACKBONE | {"extension": 928}))
def exmobilevit_s() -> MobileViT:
    """ExMobileViT-928 as the ExMobileViT repository builds it: MobileViT-S widths, its backbone
    (`EXMOBILEVIT_BACKBONE`) and the 928 classifier; 5,958,064 parameters at 1000 classes, as its code
    counts. `extension=None` gives the repository's MobileViT baseline (+ a classifier bias)."""
