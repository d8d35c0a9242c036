"""ViTAEv2 (Zhang, Xu, Zhang & Tao, IJCV 2023): convolutional inductive bias inside the transformer.

Each stage is one Reduction Cell (RC) followed by `depth` Normal Cells (NC); tokens never carry a class
token or a positional embedding (position comes from the convolutions), and the head reads their mean.

    RC:  t = MSA(LN(PRM(x))) + PCM(x);           out = t + MLP(LN t)    (x a map, out tokens at H/r)
    NC:  t = x + MSA(LN x) + PCM(x as a map);    out = t + MLP(LN t)

PRM, the pyramid reduction module, runs parallel convolutions with dilations d ∈ `dilations` at stride r
and concatenates them, so every token sees several receptive fields (the multi-scale bias); PCM, the
parallel convolution module, is conv-BN-SiLU-conv-BN-SiLU-conv beside the attention (the locality bias).
MSA is window attention (non-overlapping w×w windows, no shift) in early stages and global attention
late; a global RC attends as T2T's token transformer (no q/k/v bias, a shortcut from v), as the official
one does. Stage layouts are data (`ViTAEStage`); the constructor picks a small-image layout from
`image_size` unless `stages` is given. Spec: `variants.md`, section ViTAEv2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import islice

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from lit_vir.checks import ConfigError, check_choice, check_counts, check_divides, check_probabilities, check_range
from lit_vir.models.drop_path import linear_drop_path_rates
from lit_vir.models.presets import preset
from lit_vir.models.vit import Attention, Mlp

__all__ = [
    "STAGES_28",
    "STAGES_32",
    "STAGES_S_IMAGENET",
    "NormalCell",
    "ParallelConvolution",
    "PyramidReduction",
    "ReductionCell",
    "TokenAttention",
    "ViTAEStage",
    "ViTAEv2",
    "WindowAttention",
    "small_image_stages",
    "vitae_v2_28",
    "vitae_v2_32",
    "vitae_v2_s",
]


@dataclass(frozen=True)
class ViTAEStage:
    """One stage: a Reduction Cell that downsamples by `downsample` (r), then `depth` Normal Cells.

    `dim` is the token width D after the RC; `heads` the NC heads; `window` the attention window w
    (0: global attention; a window as large as the map is global too); `prm_dim` the width of each
    dilated PRM convolution (the official code's `embed_dims`: RC attention reads prm_dim·|dilations|
    channels); `prm_kernel` their kernel size; `reduction_heads` the RC heads; `normal_groups` and
    `reduction_groups` the grouped convolutions of the NC and RC PCMs (the code's `NC_group`, `RC_group`).
    """

    downsample: int
    dim: int
    depth: int
    heads: int
    window: int = 0
    prm_dim: int = 64
    prm_kernel: int = 3
    dilations: tuple[int, ...] = (1, 2, 3)
    reduction_heads: int = 1
    normal_groups: int = 1
    reduction_groups: int = 1


# The paper's ImageNet ViTAEv2-S (official `ViTAEv2_S`, 224×224: maps 56, 28, 14, 7; 19.2M parameters).
STAGES_S_IMAGENET = (
    ViTAEStage(4, 64, 2, 1, window=7, prm_dim=64, prm_kernel=7, dilations=(1, 2, 3, 4)),
    ViTAEStage(2, 128, 2, 2, window=7, prm_dim=64, dilations=(1, 2, 3), normal_groups=32, reduction_groups=16),
    ViTAEStage(2, 256, 8, 4, prm_dim=128, dilations=(1, 2), reduction_heads=2, normal_groups=64, reduction_groups=32),
    ViTAEStage(2, 512, 2, 8, prm_dim=256, dilations=(1, 2), reduction_heads=4, normal_groups=128, reduction_groups=64),
)
# 32×32: maps 16, 8, 4; windows of 4 in the first two stages, global attention in the last.
STAGES_32 = (
    ViTAEStage(2, 64, 2, 1, window=4, prm_dim=64, dilations=(1, 2, 3, 4)),
    ViTAEStage(2, 128, 2, 2, window=4, prm_dim=64, dilations=(1, 2, 3), normal_groups=32, reduction_groups=16),
    ViTAEStage(2, 256, 4, 4, prm_dim=128, dilations=(1, 2), reduction_heads=2, normal_groups=64, reduction_groups=32),
)
# 28×28: maps 14, 7; windows of 7 (2×2 windows) in the first stage, global attention in the second.
STAGES_28 = (
    ViTAEStage(2, 128, 2, 2, window=7, prm_dim=64, dilations=(1, 2, 3, 4), normal_groups=32),
    ViTAEStage(2, 256, 4, 4, prm_dim=128, dilations=(1, 2), reduction_heads=2, normal_groups=64, reduction_groups=32),
)


def small_image_stages(image_size: int) -> tuple[ViTAEStage, ...]:
    """The layout for `image_size`: three ×2 stages when 8 divides it (32 → 16, 8, 4), else two (28 → 14, 7)."""
    if image_size % 8 == 0:
        return STAGES_32
    if image_size % 4 == 0:
        return STAGES_28
    raise ConfigError(
        f"ViTAEv2: image_size = {image_size} has no built-in stage layout (it needs a multiple of 4: "
        "28 → 14, 7 or 32 → 16, 8, 4); pass `stages` whose downsample ratios divide the image."
    )


def to_tokens(feature_map: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, H·W, C), row-major."""
    return feature_map.flatten(2).transpose(1, 2)


def to_map(tokens: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H·W, C) row-major → (B, C, H, W)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, size, size)


class WindowAttention(Attention):
    """ViT's multi-head self-attention inside non-overlapping w×w windows (no shift, no position bias,
    as ViTAEv2-S); `window` 0 or ≥ the map attends globally. q/k/v project `in_dim` → `dim`, so the RC
    can attend over its wider PRM tokens and output `dim`-wide ones."""

    def __init__(
        self, in_dim: int, dim: int, num_heads: int, window: int, attention_dropout: float, dropout: float
    ) -> None:
        super().__init__(dim, num_heads, attention_dropout, dropout)
        self.qkv = nn.Linear(in_dim, 3 * dim)
        self.window = window

    def forward(self, tokens: torch.Tensor, size: int) -> torch.Tensor:  # (B, H·W, D_in)
        window = self.window if 0 < self.window < size else size
        batch, _, in_dim = tokens.shape
        count = size // window
        windows = tokens.reshape(batch, count, window, count, window, in_dim).transpose(2, 3)  # (B, n, n, w, w, D_in)
        attended = super().forward(windows.reshape(batch * count * count, window * window, in_dim))  # (B·n², w², D)
        attended = attended.reshape(batch, count, count, window, window, -1).transpose(2, 3)  # (B, n, w, n, w, D)
        return attended.reshape(batch, size * size, -1)  # (B, H·W, D)


class TokenAttention(Attention):
    """The official global RC's attention, T2T's token transformer: q/k/v project `in_dim` → `dim` without
    bias, and the output is proj(softmax(q kᵀ/√d_h) v) + v, v's heads merged: the value path is the
    shortcut, since the attention's input (the PRM tokens) is wider than its output. (B, T, D_in) → (B, T, D)."""

    def __init__(self, in_dim: int, dim: int, num_heads: int, attention_dropout: float, dropout: float) -> None:
        super().__init__(dim, num_heads, attention_dropout, dropout)
        self.qkv = nn.Linear(in_dim, 3 * dim, bias=False)

    def forward(self, tokens: torch.Tensor, size: int) -> torch.Tensor:  # (B, T, D_in); `size`: global anyway
        q, k, v = self.split_heads(tokens)  # (B, heads, T, head_dim)
        dropout = self.attention_dropout if self.training else 0.0
        attended = self.merge_heads(F.scaled_dot_product_attention(q, k, v, dropout_p=dropout))  # (B, T, D)
        return attended + v.transpose(1, 2).flatten(2)


class PyramidReduction(nn.Module):
    """PRM: parallel k×k convolutions at stride r with dilations d (each + GELU), concatenated.

    Padding ⌈((k−1)·d + 1 − r)/2⌉ (the official code's) maps H to H/r for every dilation, so the
    outputs stack into one map of |dilations|·E channels: each position sees |dilations| scales.
    """

    def __init__(self, in_channels: int, dim: int, kernel_size: int, stride: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, dim, kernel_size, stride, padding=self.padding(kernel_size, stride, d), dilation=d)
            for d in dilations
        )
        self.act = nn.GELU()

    @staticmethod
    def padding(kernel_size: int, stride: int, dilation: int) -> int:
        return math.ceil(((kernel_size - 1) * dilation + 1 - stride) / 2)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        return torch.cat([self.act(conv(feature_map)) for conv in self.convs], dim=1)  # (B, |d|·E, H/r, W/r)


class ParallelConvolution(nn.Sequential):
    """PCM: 3×3 conv → BN → SiLU → 3×3 conv → BN → SiLU → 3×3 conv (grouped), beside the attention.

    `widths` (in, hidden, hidden2, out) and `strides` follow the official code: an RC's PCM is
    (C_in, E, E, D) with strides that reach ×r (2 → 2,1,1; 4 → 2,2,1), an NC's is (D, m·D, D, D) at stride 1.
    """

    def __init__(self, widths: tuple[int, int, int, int], strides: tuple[int, int, int], groups: int) -> None:
        first, second, third, out = widths
        super().__init__(
            nn.Conv2d(first, second, 3, strides[0], padding=1, groups=groups),
            nn.BatchNorm2d(second),
            nn.SiLU(),
            nn.Conv2d(second, third, 3, strides[1], padding=1, groups=groups),
            nn.BatchNorm2d(third),
            nn.SiLU(),
            nn.Conv2d(third, out, 3, strides[2], padding=1, groups=groups),
        )


class ReductionCell(nn.Module):
    """RC: t = MSA(LN(PRM(x))) + PCM(x); out = t + MLP(LN t). Map (B, C, H, W) → tokens (B, H·W/r², D).

    There is no identity shortcut around the attention: its input (|d|·E wide, at H/r) differs from
    its output. As in the official code, a windowed RC (`window` > 0) attends with q/k/v biases and
    no shortcut (the PCM branch, a strided convolution of the input map, plays that role), a global RC
    (`window` 0) with T2T's `TokenAttention`: no q/k/v bias, v as the shortcut.

    The window is the stage's, as for its Normal Cells. The official code builds every windowed RC
    with window 7 whatever its stage's setting (`window_size` is not passed on to it) and zero-pads the
    map to a multiple of 7, the padded tokens joining the attention unmasked: the same for ViTAEv2-S
    and `STAGES_28` (window 7, maps 56, 28 / 14), not for `STAGES_32` (window 4, where the official
    code would pad 16 → 21 and 8 → 14). Here windows must tile the map (`check_stages`).
    """

    def __init__(
        self,
        in_channels: int,
        stage: ViTAEStage,
        mlp_ratio: float,
        dropout: float,
        attention_dropout: float,
    ) -> None:
        super().__init__()
        pyramid_dim = stage.prm_dim * len(stage.dilations)
        strides = tuple(2 if stage.downsample >= 2 ** (i + 1) else 1 for i in range(3))
        self.prm = PyramidReduction(in_channels, stage.prm_dim, stage.prm_kernel, stage.downsample, stage.dilations)
        self.norm1 = nn.LayerNorm(pyramid_dim)
        self.attn = (
            WindowAttention(pyramid_dim, stage.dim, stage.reduction_heads, stage.window, attention_dropout, dropout)
            if stage.window
            else TokenAttention(pyramid_dim, stage.dim, stage.reduction_heads, attention_dropout, dropout)
        )
        widths = (in_channels, stage.prm_dim, stage.prm_dim, stage.dim)
        self.pcm = ParallelConvolution(widths, strides, stage.reduction_groups)
        self.norm2 = nn.LayerNorm(stage.dim)
        self.mlp = Mlp(stage.dim, int(stage.dim * mlp_ratio), dropout)

    def forward(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, int]:  # (B, C, H, W)
        pyramid = self.prm(feature_map)  # (B, |d|·E, H/r, W/r)
        size = pyramid.shape[-1]
        tokens = self.attn(self.norm1(to_tokens(pyramid)), size) + to_tokens(self.pcm(feature_map))  # (B, T, D)
        return tokens + self.mlp(self.norm2(tokens)), size


class NormalCell(nn.Module):
    """NC: t = x + MSA(LN x) + PCM(x as a map); out = t + MLP(LN t). Tokens (B, T, D) → (B, T, D).

    Stochastic depth (`drop_path`, the probability of dropping a branch for an image in training) acts on
    each of the three residual branches, MSA, PCM and MLP, drawn independently, as in the official cell.
    """

    def __init__(
        self, stage: ViTAEStage, mlp_ratio: float, dropout: float, attention_dropout: float, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        dim, hidden = stage.dim, int(stage.dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, dim, stage.heads, stage.window, attention_dropout, dropout)
        self.pcm = ParallelConvolution((dim, hidden, dim, dim), (1, 1, 1), stage.normal_groups)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden, dropout)
        self.drop_path = StochasticDepth(drop_path, "row")

    def forward(self, tokens: torch.Tensor, size: int) -> torch.Tensor:  # (B, T, D)
        local = to_tokens(self.pcm(to_map(tokens, size)))  # (B, T, D)
        tokens = tokens + self.drop_path(self.attn(self.norm1(tokens), size)) + self.drop_path(local)
        return tokens + self.drop_path(self.mlp(self.norm2(tokens)))


class Stage(nn.Module):
    """One Reduction Cell, then `depth` Normal Cells at its resolution, the i-th with drop-path rate
    `drop_path_rates[i]`."""

    def __init__(
        self,
        in_channels: int,
        stage: ViTAEStage,
        mlp_ratio: float,
        reduction_mlp_ratio: float,
        dropout: float,
        attention_dropout: float,
        drop_path_rates: tuple[float, ...],
    ) -> None:
        super().__init__()
        self.reduction = ReductionCell(in_channels, stage, reduction_mlp_ratio, dropout, attention_dropout)
        self.cells = nn.ModuleList(
            NormalCell(stage, mlp_ratio, dropout, attention_dropout, rate) for rate in drop_path_rates
        )

    def forward(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, int]:  # (B, C, H, W)
        tokens, size = self.reduction(feature_map)  # (B, H·W/r², D)
        for cell in self.cells:
            tokens = cell(tokens, size)
        return tokens, size


class ViTAEv2(nn.Module):
    """ViTAEv2 for small images, trained from scratch: mean-pooled tokens → Linear, no class token.

    `stages=None` picks the layout from `image_size` (`small_image_stages`). How the small-image
    layouts deviate from the paper's ImageNet ViTAEv2-S (`STAGES_S_IMAGENET`, 224×224, 19.2M):

    ===================  ==========================  ===========================  =======================
    (per stage)          ViTAEv2-S, 224 (paper)       32×32 (`STAGES_32`)          28×28 (`STAGES_28`)
    ===================  ==========================  ===========================  =======================
    stages, RC ratio r   4: 4, 2, 2, 2                3: 2, 2, 2                   2: 2, 2
    token maps           56, 28, 14, 7                16, 8, 4                     14, 7
    token width D        64, 128, 256, 512            64, 128, 256                 128, 256
    Normal Cells         2, 2, 8, 2                   2, 2, 4                      2, 4
    NC / RC heads        1, 2, 4, 8 / 1, 1, 2, 4      1, 2, 4 / 1, 1, 2            2, 4 / 1, 2
    attention            window 7, 7, global, global  window 4, 4, global          window 7, global
    PRM kernel, dil.     7 (1-4); 3 (1-3); 3 (1,2)×2  3 (1-4); 3 (1-3); 3 (1,2)    3 (1-4); 3 (1,2)
    PRM width E          64, 64, 128, 256             64, 64, 128                  64, 128
    NC / RC PCM groups   1, 32, 64, 128 / 1,16,32,64  1, 32, 64 / 1, 16, 32        32, 64 / 1, 32
    parameters           19.2M (paper; here 19.36M)   5.86M (10 classes)           4.97M (10 classes)
    ===================  ==========================  ===========================  =======================

    In words: at 32×32 the first RC downsamples ×2 with a 3×3 PRM (dilations 1-4 kept) instead of ×4
    with 7×7, S's fourth stage (D 512) is dropped (its map would be 2×2), the third stage has 4 Normal
    Cells instead of 8, and windows are 4×4 instead of 7×7 (16 then 4 windows per map; S has 64 then 16).
    At 28×28 the stage that reads the image is S's second stage (D 128) and the last is S's third.
    Parameter counts equal the official code's for the same layout (ViTAEv2-S 19,355,688; the official
    `ViTAEv2_basic` built with `STAGES_32`, `STAGES_28`: 5,858,890, 4,966,218 at 10 classes). Also
    differing from the official code: LayerNorm eps 1e-5 (the official NCs 1e-6), and RC windows (see
    `ReductionCell`).

    Stochastic depth. `drop_path_rate` is the rate of the last Normal Cell; the i-th of the n NCs of the
    whole network drops its branches with rate · i/(n − 1) (timm's linear rule), Reduction Cells never
    (the official code gives them none). The official code slices the rates per stage from the previous
    stage's depth rather than the running total (ViTAEv2-S's third stage reuses the second's rates);
    here every NC has its own step of the one linear schedule.
    """

    def __init__(
        self,
        num_classes: int = 10,
        image_size: int = 32,
        in_channels: int = 3,
        *,
        stages: tuple[ViTAEStage, ...] | None = None,
        mlp_ratio: float = 4.0,
        reduction_mlp_ratio: float = 1.0,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_counts(owner, num_classes=num_classes, image_size=image_size, in_channels=in_channels)
        check_range(owner, "mlp_ratio", mlp_ratio, low=0, low_inclusive=False)
        check_range(owner, "reduction_mlp_ratio", reduction_mlp_ratio, low=0, low_inclusive=False)
        check_probabilities(owner, dropout=dropout, attention_dropout=attention_dropout, drop_path_rate=drop_path_rate)
        stages = small_image_stages(image_size) if stages is None else tuple(stages)
        if not stages:
            raise ConfigError(f"{owner}: stages is empty; give at least one ViTAEStage (or null for the preset).")
        check_stages(owner, stages, image_size, in_channels, mlp_ratio)

        self.num_classes = num_classes
        self.stage_specs = stages
        widths = (in_channels, *(stage.dim for stage in stages))
        schedule = iter(linear_drop_path_rates(drop_path_rate, sum(stage.depth for stage in stages)))  # every NC's
        rates = [tuple(islice(schedule, stage.depth)) for stage in stages]  # the one schedule, cut per stage
        self.stages = nn.ModuleList(
            Stage(width, stage, mlp_ratio, reduction_mlp_ratio, dropout, attention_dropout, rate)
            for width, stage, rate in zip(widths[:-1], stages, rates, strict=True)
        )
        self.head_drop = nn.Dropout(dropout)
        self.head = nn.Linear(stages[-1].dim, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official initialisation: truncated normal (std .02) for Linear weights, zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def no_weight_decay(self) -> set[str]:
        """timm's convention: parameters to keep out of weight decay beyond biases, norms and other 1-d
        ones. None here: ViTAEv2 has no position embedding and no class token."""
        return set()

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        feature_map = images  # (B, C, H, W)
        for stage in self.stages:
            tokens, size = stage(feature_map)  # (B, T, D)
            feature_map = to_map(tokens, size)  # (B, D, H', W')
        return tokens  # (B, T, D) of the last stage

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_drop(features.mean(dim=1)))  # (B, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))


def check_stages(
    owner: str, stages: tuple[ViTAEStage, ...], image_size: int, in_channels: int, mlp_ratio: float
) -> None:
    """Every stage must tile its map and split its channels evenly; errors name `stages[i].field`."""
    size, channels = image_size, in_channels
    for index, stage in enumerate(stages):
        if not isinstance(stage, ViTAEStage):
            raise ConfigError(f"{owner}: stages[{index}] = {stage!r} is not a ViTAEStage.")
        name = f"stages[{index}]"
        check_choice(owner, f"{name}.downsample", stage.downsample, (2, 4, 8))
        check_divides(owner, f"{name}.downsample", stage.downsample, size, "the map size entering it")
        size //= stage.downsample
        for field in ("dim", "depth", "heads", "prm_dim", "reduction_heads", "normal_groups", "reduction_groups"):
            check_range(owner, f"{name}.{field}", getattr(stage, field), low=1 if field != "depth" else 0)
        check_range(owner, f"{name}.window", stage.window, low=0)
        check_range(owner, f"{name}.prm_kernel", stage.prm_kernel, low=1)
        if not stage.dilations or min(stage.dilations) < 1:
            raise ConfigError(f"{owner}: {name}.dilations = {stage.dilations!r} must be one or more integers ≥ 1.")
        if (stage.prm_kernel - 1) * min(stage.dilations) + 1 < stage.downsample:
            raise ConfigError(
                f"{owner}: {name}.prm_kernel = {stage.prm_kernel} is narrower than the stride "
                f"{name}.downsample = {stage.downsample}, so the PRM would skip pixels; use a kernel ≥ the stride."
            )
        window = stage.window if 0 < stage.window < size else size
        check_divides(owner, f"{name}.window", window, size, f"its map size (image {image_size})")
        for field, heads in (("heads", stage.heads), ("reduction_heads", stage.reduction_heads)):
            if stage.dim % heads:
                raise ConfigError(f"{owner}: {name}.dim = {stage.dim} is not divisible by {name}.{field} = {heads}.")
        hidden = int(stage.dim * mlp_ratio)
        for field, groups, widths in (
            ("normal_groups", stage.normal_groups, (stage.dim, hidden)),
            ("reduction_groups", stage.reduction_groups, (channels, stage.prm_dim, stage.dim)),
        ):
            if any(width % groups for width in widths):
                raise ConfigError(
                    f"{owner}: {name}.{field} = {groups} does not divide the PCM widths {widths}; "
                    f"choose a common divisor (1 always works)."
                )
        channels = stage.dim


@preset(ViTAEv2, image_size=32, stages=STAGES_32)
def vitae_v2_32() -> ViTAEv2:
    """ViTAEv2 for 32×32 images (CIFAR): maps 16, 8, 4; 5.86M parameters at 10 classes."""


@preset(ViTAEv2, image_size=28, in_channels=1, stages=STAGES_28)
def vitae_v2_28() -> ViTAEv2:
    """ViTAEv2 for 28×28 images (MNIST): maps 14, 7; 4.97M parameters at 10 classes."""


@preset(ViTAEv2, num_classes=1000, image_size=224, stages=STAGES_S_IMAGENET)
def vitae_v2_s() -> ViTAEv2:
    """The paper's ImageNet ViTAEv2-S (224×224, 1000 classes, 19.2M parameters), for reference."""
