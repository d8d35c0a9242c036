"""Quantised replacements for the matrix products of ViT and ViR, and the swap that builds a quantised copy.

MPTQ-ViT (Tai & Wu 2024) fake-quantises Linear weights per channel and the activations entering them,
including the LayerNorm outputs entering QKV/FC1 (made symmetric by SQ-b, `smoothing.py`), the post-GELU
values entering FC2 (OPT-m, `gelu.py`) and the softmax output entering softmax·V:

- `QuantLinear`: an nn.Linear (same parameters) whose weight is rounded per output channel and whose
  input passes its site's quantiser first;
- `QuantAttention`: ViT's `Attention` with an explicit softmax, so its output can be quantised (asymmetric:
  it lies in [0, 1]); q, k and v stay float. `split_heads`/`merge_heads` are inherited, so a model that
  calls them itself (ReViT) still gets quantised q/k/v and output projections, but keeps its own softmax float;
- `QuantReadout`: ViR's readout on quantised Linears, one input scale per concatenated source.

Input quantiser of each other Linear: OPT-m's two-scale quantiser after a GELU (`Mlp.fc2`, ViR's residual-MLP
second Linear; a symmetric one with OPT-m off), symmetric per-tensor everywhere else.

Every nn.Linear is quantised except ViR's frozen patch embedding (a fixed random projection, like the
reservoirs W and V, which stay float — MPTQ-ViT applies to ViR's trainable parts) and zero-width layers
(ViT-Slim's fully pruned ones). Convolutions (ViT's
patch embedding, MobileViT, ViTAE) and normalisations stay float. On backbones other than ViT, ReViT and
ViR this still quantises every Linear it finds: what matches the patterns above gets the special
quantisers, the rest the plain ones; `coverage` says which.

Precision is one bit width b per `QuantLinear`, for its weight and its input (W_b A_b); a softmax output
takes the width of its attention's qkv layer.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lit_vir.models.vir import Readout, ViR
from lit_vir.models.vit import Attention, Mlp
from lit_vir.quantization.gelu import TwinScaleQuantizer
from lit_vir.quantization.quantizers import ActivationQuantizer, SegmentedQuantizer, quantize_weight

__all__ = [
    "Coverage",
    "QuantAttention",
    "QuantLinear",
    "QuantReadout",
    "coverage",
    "quantized_copy",
    "quantized_layers",
    "set_precision",
]


class QuantLinear(nn.Linear):
    """nn.Linear with fake-quantised weight (per output channel, symmetric) and input (its site's quantiser).
    Float while `bits` is None; it shares the original layer's parameters."""

    def __init__(self, linear: nn.Linear, input_quantizer: nn.Module) -> None:
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        self.weight = linear.weight
        self.bias = linear.bias
        self.input_quantizer = input_quantizer
        self.bits: int | None = None

    def set_bits(self, bits: int | None) -> None:
        self.bits = bits
        self.input_quantizer.set_bits(bits, self.weight.detach())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.bits is None else quantize_weight(self.weight, self.bits)
        return F.linear(self.input_quantizer(inputs), weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bits={self.bits}"


class QuantAttention(Attention):
    """ViT's multi-head self-attention with an explicit softmax whose output is fake-quantised.

    Takes over the original module's layers (qkv, proj, dropout) and settings; the float function is
    the original's (scaled dot product → softmax → dropout → ·V).
    """

    def __init__(self, attention: Attention) -> None:
        nn.Module.__init__(self)  # Attention.__init__ would build fresh layers; these are the trained ones
        self.num_heads = attention.num_heads
        self.head_dim = attention.head_dim
        self.scale = attention.scale
        self.attention_dropout = attention.attention_dropout
        self.qkv = attention.qkv
        self.proj = attention.proj
        self.proj_drop = attention.proj_drop
        self.softmax_quantizer = ActivationQuantizer("asymmetric")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split_heads(tokens)  # (B, H, T, d) each
        weights = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)  # (B, H, T, T)
        weights = self.softmax_quantizer(weights)
        weights = F.dropout(weights, self.attention_dropout, self.training)
        return self.merge_heads(weights @ v)  # (B, T, D)


class QuantReadout(nn.Module):
    """ViR's readout (the spec's two equations) on quantised Linears, each input source with its own scale:

        o_t = tanh(W_o [x_t ; h_t] + b_o)                            (D+N) → D
        y_t = tanh(W_q [x_t ; h_t ; o_t ; x_t² ; h_t² ; o_t²] + b_q)   (4D+2N) → D

    The sources have very different ranges (tokens, tanh states in [−1, 1], their squares ≥ 0), and each
    is a tensor of its own before the concatenation, so each gets its own per-tensor grid (`SegmentedQuantizer`:
    symmetric for the signed parts, asymmetric for the squares). Written out here rather than wrapping
    `Readout.forward`, which computes the same function block by block on the raw weights.
    """

    def __init__(self, readout: Readout) -> None:
        super().__init__()
        dim = readout.state_readout.out_features  # D
        nodes = readout.state_readout.in_features - dim  # N
        self.state_readout = QuantLinear(readout.state_readout, SegmentedQuantizer([dim, nodes], ["symmetric"] * 2))
        self.quadratic_readout = QuantLinear(
            readout.quadratic_readout,
            SegmentedQuantizer([dim, nodes, dim, dim, nodes, dim], ["symmetric"] * 3 + ["asymmetric"] * 3),
        )

    def forward(self, tokens: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        linear = torch.cat([tokens, states.to(tokens.dtype)], dim=-1)  # (B, T, D+N)
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


def post_gelu_quantizers(model: nn.Module, opt_m: bool) -> dict[int, ActivationQuantizer]:
    """The input quantiser of every Linear a GELU feeds, by the Linear's id: OPT-m's, or a symmetric one."""
    return {
        id(linear): TwinScaleQuantizer() if opt_m else ActivationQuantizer("symmetric")
        for module in model.modules()
        for linear in post_gelu_linears(module)
    }


def frozen_linears(model: nn.Module) -> set[int]:
    """Ids of the Linears that stay float: ViR's fixed random patch embedding (unless it was trained)."""
    return {
        id(module.embedding.projection)
        for module in model.modules()
        if isinstance(module, ViR) and not module.train_embedding
    }


def _replace_children(model: nn.Module, replacement) -> None:
    """Set every child `c` of every module to `replacement(c)` where that is not None."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = replacement(child)
            if new is not None:
                setattr(parent, name, new)


def quantized_copy(model: nn.Module, opt_m: bool = True) -> nn.Module:
    """A copy of `model` with its attention and Linear layers swapped for quantised ones (float until
    `set_precision`; calibrate first, see `calibration.calibrated_copy`). The original is untouched."""
    quantized = copy.deepcopy(model).eval()
    structural = {Attention: QuantAttention, Readout: QuantReadout}
    _replace_children(quantized, lambda child: structural[type(child)](child) if type(child) in structural else None)
    special, frozen = post_gelu_quantizers(quantized, opt_m), frozen_linears(quantized)

    def swap(child: nn.Module) -> nn.Module | None:
        if type(child) is not nn.Linear or id(child) in frozen or child.weight.numel() == 0:
            return None
        return QuantLinear(child, special.get(id(child)) or ActivationQuantizer("symmetric"))

    _replace_children(quantized, swap)
    return quantized


def quantized_layers(model: nn.Module) -> dict[str, QuantLinear]:
    """The model's quantised Linears by module name: the units of the mixed-precision search."""
    return {name: module for name, module in model.named_modules() if isinstance(module, QuantLinear)}


def set_precision(model: nn.Module, bits: int | Mapping[str, int] | None) -> None:
    """One bit width for every quantised layer (None: float), or one per layer name (every layer named)."""
    layers = quantized_layers(model)
    chosen = dict(bits) if isinstance(bits, Mapping) else dict.fromkeys(layers, bits)
    if set(chosen) != set(layers):
        missing, unknown = sorted(set(layers) - set(chosen)), sorted(set(chosen) - set(layers))
        raise ValueError(
            f"set_precision: bit widths must name every quantised layer; missing {missing}, unknown {unknown}."
        )
    for name, layer in layers.items():
        layer.set_bits(chosen[name])
    for module in model.modules():
        if isinstance(module, QuantAttention):
            quantizer, qkv = module.softmax_quantizer, module.qkv
            quantizer.set_bits(qkv.bits if quantizer.calibrated and isinstance(qkv, QuantLinear) else None)


@dataclass(frozen=True)
class Coverage:
    """What a calibrated quantised copy quantises (module names): its Linears, the attentions whose softmax
    output is quantised (those whose own forward ran during calibration: not ReViT's), the Linears fed
    through OPT-m, and the leaf layers holding matrices that stay float (convolutions, frozen embeddings,
    reservoirs)."""

    linears: list[str]
    softmax: list[str]
    opt_m: list[str]
    float_layers: list[str]


def coverage(model: nn.Module) -> Coverage:
    modules = dict(model.named_modules())
    layers = quantized_layers(model)
    float_layers = [
        name
        for name, module in modules.items()
        if not list(module.children())  # a QuantLinear has its quantiser as a child, so only float leaves
        and any(tensor.dim() >= 2 for tensor in [*module.parameters(), *module.buffers()])
    ]
    return Coverage(
        linears=list(layers),
        softmax=[
            name
            for name, module in modules.items()
            if isinstance(module, QuantAttention) and module.softmax_quantizer.calibrated
        ],
        opt_m=[name for name, layer in layers.items() if isinstance(layer.input_quantizer, TwinScaleQuantizer)],
        float_layers=float_layers,
    )
