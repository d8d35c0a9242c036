"""MPTQ-ViT (Tai & Wu 2024): mixed-precision post-training quantisation of ViT and ViR, in plain torch.

From a trained float model and a few hundred training images, with no retraining:
`calibrated_copy` (SQ-b folding, module swap, calibration) → `set_precision` (uniform W_b A_b or per layer)
→ `greedy_search` (mixed precision meeting an average bit width) → `model_size` (bits as stored).
"""

from lit_vir.quantization.calibration import Recipe, calibrated_copy, observe, predict
from lit_vir.quantization.gelu import TwinScaleQuantizer, twin_quantize
from lit_vir.quantization.mixed_precision import (
    BIT_CHOICES,
    MixedPrecision,
    SearchStep,
    average_bits,
    calibration_loss,
    greedy_search,
    layer_sizes,
)
from lit_vir.quantization.modules import (
    Coverage,
    QuantAttention,
    QuantLinear,
    coverage,
    quantized_copy,
    quantized_layers,
    set_precision,
)
from lit_vir.quantization.quantizers import ActivationQuantizer, SegmentedQuantizer, quantize_weight, weight_scales
from lit_vir.quantization.size import ModelSize, model_size
from lit_vir.quantization.smoothing import smoothed_copy, smoothing_pairs

__all__ = [
    "BIT_CHOICES",
    "ActivationQuantizer",
    "Coverage",
    "MixedPrecision",
    "ModelSize",
    "QuantAttention",
    "QuantLinear",
    "Recipe",
    "SearchStep",
    "SegmentedQuantizer",
    "TwinScaleQuantizer",
    "average_bits",
    "calibrated_copy",
    "calibration_loss",
    "coverage",
    "greedy_search",
    "layer_sizes",
    "model_size",
    "observe",
    "predict",
    "quantize_weight",
    "quantized_copy",
    "quantized_layers",
    "set_precision",
    "smoothed_copy",
    "smoothing_pairs",
    "twin_quantize",
    "weight_scales",
]
