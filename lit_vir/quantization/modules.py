"""Quantised replacements for the matrix products of ViT and ViR, and the swap that builds a quantised copy.

MPTQ-ViT (Tai & Wu 2024) fake-quantises every matrix product of a ViT — "fully quantised": both inputs of
each product are on a grid, a weight per output channel, an activation per tensor:

- `QuantLinear` (every nn.Linear) and `QuantConv2d` (the patch embedding, a stride-P convolution): the
  weight rounded per output channel, the input through its site's quantiser first. The input quantiser
  is OPT-m's two-scale one after a GELU (`Mlp.fc2`, ViR's residual-MLP second Linear; symmetric with
  OPT-m off, `gelu.py`), and a symmetric per-tensor grid everywhere else — the LayerNorm outputs entering
  qkv / fc1 / the head made symmetric by SQ-b (`smoothing.py`).
- `QuantAttention`: ViT's `Attention` with its two products quantised, q·kᵀ and A·V, each a `QuantMatmul`
  that quantises both of its inputs (q, kᵀ, v symmetric per tensor; the softmax output A with the
  quantiser of `softmax.py`). It overrides the steps `Attention` exposes (`scores`, `weighted_values`), so
  ReViT's blocks, which call those steps themselves around their logit mixing, are covered by the same
  class. Products computed elsewhere stay float: ViT-Slim's masked blocks hold ViT's `Attention` but
  call scaled_dot_product_attention themselves (`coverage` lists such attentions, whose products never
  ran), and MobileViT's and ViTAE's attentions are classes of their own.
- `QuantReadout`: ViR's readout on quantised Linears, one input grid per concatenated source.

The patch embedding and the classifier head are the model's edge layers: by default each is fixed at
W8A8 (`EDGE_BITS`) and stays out of the uniform width and of the search, as PTQ papers keep the first
and last layer (`search_edges=True` treats them as every other layer). For ViR the "patch embedding" is
its fixed random projection (`embedding.projection`), quantised like ViT's; its reservoirs (W, V, drawn
from the seed, not stored, a fixed dynamical system MPTQ-ViT has no quantiser for) stay float, and so do
normalisations and every convolution other than ViT's patch embedding (MobileViT, ViTAE). Other
backbones: every nn.Linear is quantised (plain quantisers where no pattern above matches), their attention
products only where the attention is ViT's `Attention`; `coverage` says what was.

Widths are set per unit by `precision.set_precision`: a weight width per quantised layer, an activation
width per product input (a layer's input; both inputs of a `QuantMatmul`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lit_vir.models.vir import Readout, ViR
from lit_vir.models.vit import Attention, Mlp
from lit_vir.quantization.gelu import TwinScaleQuantizer
from lit_vir.quantization.quantizers import ActivationQuantizer, SegmentedQuantizer, quantize_weight
from lit_vir.quantization.softmax import SoftmaxKind, softmax_quantizer

__all__ = [
    "EDGE_BITS",
    "Coverage",
    "QuantAttention",
    "QuantConv2d",
    "QuantLinear",
    "QuantMatmul",
    "QuantReadout",
    "coverage",
    "edge_layers",
    "quantized_copy",
    "quantized_layers",
]

EDGE_BITS = 8
Quantizer = ActivationQuantizer | SegmentedQuantizer


def _values_per_image(quantizer: Quantizer) -> float:
    parts = quantizer.parts if isinstance(quantizer, SegmentedQuantizer) else [quantizer]
    return sum(part.values_per_image for part in parts)


def _calibrated(quantizer: Quantizer) -> bool:
    parts = quantizer.parts if isinstance(quantizer, SegmentedQuantizer) else [quantizer]
    return all(part.calibrated for part in parts)


class WeightedProduct:
    """What `QuantLinear` and `QuantConv2d` share: a weight width, an input width, and `fixed_bits` — an
    edge layer's width (W and A) whenever the model is quantised, which keeps it out of the search."""

    weight: nn.Parameter
    input_quantizer: Quantizer
    weight_bits: int | None
    activation_bits: int | None
    fixed_bits: int | None

    def consumer_weight(self) -> torch.Tensor | None:
        """The weight the input quantiser's fit measures its error through (None: the input's own error)."""
        return None

    def set_bits(self, weight_bits: int | None, activation_bits: int | None) -> None:
        self.weight_bits, self.activation_bits = weight_bits, activation_bits
        self.input_quantizer.set_bits(activation_bits, self.consumer_weight())

    def quantized_weight(self) -> torch.Tensor:
        return self.weight if self.weight_bits is None else quantize_weight(self.weight, self.weight_bits)

    @property
    def calibrated(self) -> bool:
        return _calibrated(self.input_quantizer)

    @property
    def values_per_image(self) -> float:
        return _values_per_image(self.input_quantizer)

    def bits_repr(self) -> str:
        fixed = f", fixed_bits={self.fixed_bits}" if self.fixed_bits is not None else ""
        return f"weight_bits={self.weight_bits}, activation_bits={self.activation_bits}{fixed}"


class QuantLinear(WeightedProduct, nn.Linear):
    """nn.Linear with fake-quantised weight (per output channel, symmetric) and input (its site's quantiser).
    Float while its widths are None; it shares the original layer's parameters."""

    def __init__(self, linear: nn.Linear, input_quantizer: Quantizer, fixed_bits: int | None = None) -> None:
        nn.Linear.__init__(self, linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        self.weight = linear.weight
        self.bias = linear.bias
        self.input_quantizer = input_quantizer
        self.weight_bits = self.activation_bits = None
        self.fixed_bits = fixed_bits

    def consumer_weight(self) -> torch.Tensor:
        return self.weight.detach()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_quantizer(inputs), self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.bits_repr()}"


class QuantConv2d(WeightedProduct, nn.Conv2d):
    """A patch-embedding convolution with fake-quantised weight (per output channel) and input image
    (per tensor, symmetric: normalised images are signed). Shares the original layer's parameters."""

    def __init__(self, conv: nn.Conv2d, fixed_bits: int | None = None) -> None:
        nn.Conv2d.__init__(
            self,
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
            device="meta",
        )
        self.weight = conv.weight
        self.bias = conv.bias
        self.input_quantizer = ActivationQuantizer("symmetric")
        self.weight_bits = self.activation_bits = None
        self.fixed_bits = fixed_bits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.input_quantizer(images), self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.bits_repr()}"


class QuantMatmul(nn.Module):
    """A product of two activations, left @ right, each input on its own per-tensor grid of one width."""

    def __init__(self, left: ActivationQuantizer, right: ActivationQuantizer) -> None:
        super().__init__()
        self.left = left
        self.right = right
        self.activation_bits: int | None = None

    def set_bits(self, activation_bits: int | None) -> None:
        self.activation_bits = activation_bits
        self.left.set_bits(activation_bits)
        self.right.set_bits(activation_bits)

    @property
    def calibrated(self) -> bool:
        return self.left.calibrated and self.right.calibrated

    @property
    def values_per_image(self) -> float:
        return self.left.values_per_image + self.right.values_per_image

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.left(left), self.right(right))

    def extra_repr(self) -> str:
        return f"activation_bits={self.activation_bits}"


class QuantAttention(Attention):
    """ViT's attention with both products quantised: q·kᵀ in `scores` (`qk`: q and kᵀ symmetric) and
    dropout(A)·V in `weighted_values` (`av`: the softmax output A with its own quantiser, v symmetric).

    It overrides the steps `Attention` exposes and runs them explicitly in `forward` (the float function of
    the fused path), so a block that calls the steps itself — ReViT's `ResidualBlock`, which mixes logits
    between `scores` and `softmax` — gets the same quantised products without its code being copied here.
    It takes over the original module's layers (qkv, proj, proj_drop) and settings.
    """

    def __init__(self, attention: Attention, softmax: SoftmaxKind = "two_scale") -> None:
        nn.Module.__init__(self)  # Attention.__init__ would build fresh layers; these are the trained ones
        self.num_heads = attention.num_heads
        self.head_dim = attention.head_dim
        self.scale = attention.scale
        self.attention_dropout = attention.attention_dropout
        self.qkv = attention.qkv
        self.proj = attention.proj
        self.proj_drop = attention.proj_drop
        self.softmax_kind = softmax
        self.qk = QuantMatmul(ActivationQuantizer("symmetric"), ActivationQuantizer("symmetric"))
        self.av = QuantMatmul(softmax_quantizer(softmax), ActivationQuantizer("symmetric"))

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return self.qk(q, k.transpose(-2, -1)) * self.scale  # (B, H, T, T); the scalar scale commutes

    def weighted_values(self, weights: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.av(F.dropout(weights, self.attention_dropout, self.training), v)  # (B, H, T, d)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split_heads(tokens)  # (B, H, T, d) each
        return self.merge_heads(self.weighted_values(self.softmax(self.scores(q, k)), v))  # (B, T, D)


class QuantReadout(nn.Module):
    """ViR's readout (the spec's two equations) on quantised Linears, each input source with its own scale:

        o_t = tanh(W_o [x_t ; h_t] + b_o)                            (D+N) → D
        y_t = tanh(W_q [x_t ; h_t ; o_t ; x_t² ; h_t² ; o_t²] + b_q)   (4D+2N) → D

    The sources have very different ranges (tokens, tanh states in [−1, 1], their squares ≥ 0), and each
    is a tensor of its own before the concatenation, so each gets its own per-tensor grid (`SegmentedQuantizer`:
    symmetric for the signed parts, asymmetric for the squares; none for h when N = 0). Written out here
    rather than wrapping `Readout.forward`, which computes the same function block by block on the raw
    weights (so a swapped Linear there would never be called).
    """

    def __init__(self, readout: Readout) -> None:
        super().__init__()
        dim = readout.state_readout.out_features  # D
        nodes = readout.state_readout.in_features - dim  # N (0: a readout of the tokens alone)
        self.state_readout = QuantLinear(readout.state_readout, SegmentedQuantizer([dim, nodes], ["symmetric"] * 2))
        self.quadratic_readout = QuantLinear(
            readout.quadratic_readout,
            SegmentedQuantizer([dim, nodes, dim, dim, nodes, dim], ["symmetric"] * 3 + ["asymmetric"] * 3),
        )

    def forward(self, tokens: torch.Tensor, states: torch.Tensor | None) -> torch.Tensor:
        # states None: the `no_reservoir` ablation (use_reservoir=False), whose readouts read the tokens alone (N = 0)
        linear = tokens if states is None else torch.cat([tokens, states.to(tokens.dtype)], dim=-1)  # (B, T, D+N)
        output = torch.tanh(self.state_readout(linear))  # (B, T, D)
        features = torch.cat([linear, output], dim=-1)  # (B, T, 2D+N)
        return torch.tanh(self.quadratic_readout(torch.cat([features, features.square()], dim=-1)))  # (B, T, D)


def post_gelu_linears(module: nn.Module) -> list[nn.Linear]:
    """The Linears a GELU feeds inside `module`: a ViT `Mlp`'s fc2 (when its activation is GELU), and in an
    nn.Sequential each Linear whose nearest earlier layer other than Dropout is a GELU."""
    if isinstance(module, Mlp):
        return [module.fc2] if isinstance(module.act, nn.GELU) else []
    if not isinstance(module, nn.Sequential):
        return []
    found, after_gelu = [], False
    for child in module:
        if isinstance(child, nn.Linear) and after_gelu:
            found.append(child)
        if not isinstance(child, nn.Dropout):
            after_gelu = isinstance(child, nn.GELU)
    return found


def edge_layers(model: nn.Module) -> list[str]:
    """Module names of the patch embedding and the classifier head, the layers kept at `EDGE_BITS` by
    default: ViR's `embedding.projection` and `head.linear`; elsewhere a `patch_embed` convolution whose
    kernel equals its stride (a patch projection) and a Linear `head`."""
    if isinstance(model, ViR):
        return ["embedding.projection", "head.linear"]
    found = []
    patch = getattr(model, "patch_embed", None)
    if isinstance(patch, nn.Conv2d) and patch.kernel_size == patch.stride:
        found.append("patch_embed")
    if isinstance(getattr(model, "head", None), nn.Linear):
        found.append("head")
    return found


def _replace_children(model: nn.Module, replacement: Callable[[str, nn.Module], nn.Module | None]) -> None:
    """Set every module `m` named `name` to `replacement(name, m)` where that is not None."""
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            new = replacement(f"{parent_name}.{name}" if parent_name else name, child)
            if new is not None:
                setattr(parent, name, new)


def quantized_copy(
    model: nn.Module, opt_m: bool = True, softmax: SoftmaxKind = "two_scale", search_edges: bool = False
) -> nn.Module:
    """A copy of `model` with its matrix products quantised (float until `set_precision`; calibrate first,
    see `calibration.calibrated_copy`). The original is untouched."""
    quantized = copy.deepcopy(model).eval()
    structural = {Attention: lambda attention: QuantAttention(attention, softmax), Readout: QuantReadout}
    _replace_children(
        quantized, lambda name, child: structural[type(child)](child) if type(child) in structural else None
    )
    post_gelu = {id(linear) for module in quantized.modules() for linear in post_gelu_linears(module)}
    edges = set(edge_layers(quantized))
    fixed = None if search_edges else EDGE_BITS

    def swap(name: str, child: nn.Module) -> nn.Module | None:
        if name in edges and isinstance(child, nn.Conv2d):
            return QuantConv2d(child, fixed)
        if type(child) is not nn.Linear or child.weight.numel() == 0:
            return None
        if id(child) in post_gelu:
            quantizer = TwinScaleQuantizer() if opt_m else ActivationQuantizer("symmetric")
        else:
            quantizer = ActivationQuantizer("symmetric")
        return QuantLinear(child, quantizer, fixed if name in edges else None)

    _replace_children(quantized, swap)
    return quantized


def quantized_layers(model: nn.Module) -> dict[str, WeightedProduct]:
    """The model's quantised layers with a weight (QuantLinear, QuantConv2d) by module name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, WeightedProduct)}


@dataclass(frozen=True)
class Coverage:
    """What a calibrated quantised copy quantises (module names): its weighted layers, of which the edges
    fixed at EDGE_BITS, the attentions whose two products are quantised and those left float (their
    forward never computed them), the Linears fed through OPT-m, the softmax quantiser's kind, and the
    leaf layers holding matrices that stay float (convolutions, reservoirs, normalisations are vectors)."""

    layers: list[str]
    fixed_edges: list[str]
    attention_products: list[str]
    float_attention_products: list[str]
    opt_m: list[str]
    softmax: str | None
    float_layers: list[str]


def coverage(model: nn.Module) -> Coverage:
    modules = dict(model.named_modules())
    layers = quantized_layers(model)
    attentions = {name: module for name, module in modules.items() if isinstance(module, QuantAttention)}
    kinds = {module.softmax_kind for module in attentions.values()}
    return Coverage(
        layers=list(layers),
        fixed_edges=[name for name, layer in layers.items() if layer.fixed_bits is not None],
        attention_products=[name for name, module in attentions.items() if module.qk.calibrated],
        float_attention_products=[name for name, module in attentions.items() if not module.qk.calibrated],
        opt_m=[name for name, layer in layers.items() if isinstance(layer.input_quantizer, TwinScaleQuantizer)],
        softmax=kinds.pop() if len(kinds) == 1 else None,
        float_layers=[
            name
            for name, module in modules.items()
            if not list(module.children())  # quantised layers have their quantisers as children: float leaves only
            and any(tensor.dim() >= 2 for tensor in [*module.parameters(), *module.buffers()])
        ],
    )
