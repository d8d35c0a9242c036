"""Model size in bits, as a quantised model would be stored.

- A quantised layer (Linear, patch-embedding convolution) whose weight is at b bits: b bits per weight,
  plus one 32-bit float scale per output channel; its bias stays a 32-bit float (it is added after the
  integer product at the accumulator's precision).
- Each fitted activation quantiser: 32 bits per stored number — a symmetric grid's scale, an asymmetric
  grid's scale and zero point, OPT-m's and the two-scale softmax quantiser's Δ and m; none for log2.
- Every other parameter (float layers: LayerNorms, convolutions, embeddings, class token, positions, a
  float Linear): 32 bits. SQ-b adds nothing: it is folded into existing parameters.
- Buffers are not counted: ViR's reservoirs W, V (and b) are drawn from the seed when the model is built,
  so they are not part of what is stored — the same convention as `count_parameters` (fixed, not trainable).

Megabytes are 10^6 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from lit_vir.quantization.modules import quantized_layers
from lit_vir.quantization.quantizers import ActivationQuantizer

__all__ = ["FLOAT_BITS", "ModelSize", "model_size"]

FLOAT_BITS = 32


@dataclass(frozen=True)
class ModelSize:
    """Bits in quantised weights, in quantisation parameters (weight and activation scales, zero points,
    m) and in float parameters."""

    weight_bits: int
    quantizer_bits: int
    float_bits: int

    @property
    def bits(self) -> int:
        return self.weight_bits + self.quantizer_bits + self.float_bits

    @property
    def megabytes(self) -> float:
        return self.bits / 8 / 1e6


def model_size(model: nn.Module) -> ModelSize:
    """The size of `model` at its current precision (a float model: 32 bits per parameter)."""
    weight_bits = quantizer_bits = 0
    quantized = set()
    for layer in quantized_layers(model).values():
        if layer.weight_bits is not None:
            weight_bits += layer.weight.numel() * layer.weight_bits
            quantizer_bits += layer.weight.shape[0] * FLOAT_BITS
            quantized.add(id(layer.weight))
    for module in model.modules():
        if isinstance(module, ActivationQuantizer):
            quantizer_bits += module.parameter_count * FLOAT_BITS
    float_bits = sum(p.numel() for p in model.parameters() if id(p) not in quantized) * FLOAT_BITS
    return ModelSize(weight_bits, quantizer_bits, float_bits)
