"""MPTQ-ViT (Tai & Wu 2024): mixed-precision post-training quantisation of ViT and ViR, in plain torch.

From a trained float model and a few hundred training images, with no retraining:
`calibrated_copy` (SQ-b folding, module swap, calibration) → `set_precision` (uniform W_b A_b or per unit)
→ `greedy_search` (mixed precision meeting average weight and activation budgets) → `model_size` (bits
as stored). `docs/quantization.md` describes the method and what is quantised where.
"""

from lit_vir.quantization.calibration import Recipe, calibrated_copy, observe, predict
from lit_vir.quantization.gelu import TwinScaleQuantizer, twin_quantize
from lit_vir.quantization.mixed_precision import (
    BIT_CHOICES,
    Budget,
    MixedPrecision,
    SearchStep,
    calibration_loss,
    greedy_allocation,
    greedy_search,
)
from lit_vir.quantization.modules import (
    EDGE_BITS,
    Coverage,
    QuantAttention,
    QuantConv2d,
    QuantLinear,
    QuantMatmul,
    QuantReadout,
    coverage,
    edge_layers,
    quantized_copy,
    quantized_layers,
)
from lit_vir.quantization.precision import (
    Precision,
    activation_units,
    average_bits,
    current_precision,
    set_precision,
    unit_sizes,
    weight_units,
)
from lit_vir.quantization.quantizers import ActivationQuantizer, SegmentedQuantizer, quantize_weight, weight_scales
from lit_vir.quantization.size import ModelSize, model_size
from lit_vir.quantization.smoothing import smoothed_copy, smoothing_pairs
from lit_vir.quantization.softmax import (
    SOFTMAX_QUANTIZERS,
    Log2Quantizer,
    TwoScaleSoftmaxQuantizer,
    log2_quantize,
    softmax_quantizer,
    two_scale_quantize,
)

__all__ = [
    "BIT_CHOICES",
    "EDGE_BITS",
    "SOFTMAX_QUANTIZERS",
    "ActivationQuantizer",
    "Budget",
    "Coverage",
    "Log2Quantizer",
    "MixedPrecision",
    "ModelSize",
    "Precision",
    "QuantAttention",
    "QuantConv2d",
    "QuantLinear",
    "QuantMatmul",
    "QuantReadout",
    "Recipe",
    "SearchStep",
    "SegmentedQuantizer",
    "TwinScaleQuantizer",
    "TwoScaleSoftmaxQuantizer",
    "activation_units",
    "average_bits",
    "calibrated_copy",
    "calibration_loss",
    "coverage",
    "current_precision",
    "edge_layers",
    "greedy_allocation",
    "greedy_search",
    "log2_quantize",
    "model_size",
    "observe",
    "predict",
    "quantize_weight",
    "quantized_copy",
    "quantized_layers",
    "set_precision",
    "smoothed_copy",
    "smoothing_pairs",
    "softmax_quantizer",
    "twin_quantize",
    "two_scale_quantize",
    "unit_sizes",
    "weight_scales",
    "weight_units",
]
