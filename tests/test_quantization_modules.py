"""`lit_vir.quantization.modules`: the quantised layers and the swap, checked against plain float64 references.

Each test pins one part of the swap that the end-to-end tests of `test_quantization.py` cannot see: the defaults
of `quantized_copy`, which Linears OPT-m takes, what `coverage` reports, that each product rounds both of its
inputs and its weight, and that the swapped layers are drop-in replacements (float until widths are set, the
original's padding, dropout only in training, no parameters of their own).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_vir.models.mobilevit import TransformerLayer
from lit_vir.models.vir import Readout
from lit_vir.models.vit import Attention, Mlp
from lit_vir.quantization import (
    SOFTMAX_QUANTIZERS,
    ActivationQuantizer,
    Log2Quantizer,
    QuantAttention,
    QuantConv2d,
    QuantLinear,
    QuantMatmul,
    QuantReadout,
    TwinScaleQuantizer,
    TwoScaleSoftmaxQuantizer,
    calibrated_copy,
    coverage,
    quantized_copy,
    quantized_layers,
    unit_sizes,
)
from lit_vir.quantization.modules import post_gelu_linears
from lit_vir.quantization.quantizers import CLIP_RATIOS
from tests.test_quantization import images, observed, tiny_vir, tiny_vit


def float64_fake_quantize(values: torch.Tensor, scale: torch.Tensor | float, bits: int) -> torch.Tensor:
    """Symmetric b-bit rounding, clamp(⌊x/Δ⌉, −2^(b−1), 2^(b−1) − 1)·Δ, written out in float64."""
    top = 2 ** (bits - 1) - 1
    return torch.clamp(torch.round(values.double() / scale), -top - 1, top) * scale


def float64_symmetric_scale(rows: torch.Tensor, bits: int, weight: torch.Tensor | None = None) -> float:
    """The step of the min-error symmetric grid over the clipping ratios, by a plain float64 loop: the error
    is that of the consumer's output (Q(X) − X)·Wᵀ, or of X itself without a weight."""
    rows = rows.double()
    reach, top = float(rows.abs().max()), 2 ** (bits - 1) - 1
    errors = {}
    for ratio in CLIP_RATIOS:
        scale = ratio * reach / top
        difference = float64_fake_quantize(rows, scale, bits) - rows
        if weight is not None:
            difference = difference @ weight.double().T
        errors[scale] = float(difference.square().mean())
    return min(errors, key=errors.get)


# ------------------------------------------------------------------------------------ quantized_copy


def test_quantized_copy_defaults_are_mptq_vit_with_the_edges_fixed():
    """Without arguments: OPT-m on every post-GELU input, the two-scale softmax quantiser, and the patch
    embedding and head fixed at 8 bits (the blocks' layers are searched)."""
    quantized = quantized_copy(tiny_vit())
    assert all(type(block.mlp.fc2.input_quantizer) is TwinScaleQuantizer for block in quantized.blocks)
    assert all(type(block.attn.av.left) is TwoScaleSoftmaxQuantizer for block in quantized.blocks)
    assert all(block.attn.softmax_kind == "two_scale" for block in quantized.blocks)
    assert (quantized.patch_embed.fixed_bits, quantized.head.fixed_bits) == (8, 8)
    assert quantized.blocks[0].attn.qkv.fixed_bits is None
    searched = quantized_copy(tiny_vit(), search_edges=True)
    assert (searched.patch_embed.fixed_bits, searched.head.fixed_bits) == (None, None)


def test_quantized_copy_without_opt_m_gives_fc2_the_plain_symmetric_grid():
    quantized = quantized_copy(tiny_vit(), opt_m=False)
    for block in quantized.blocks:
        quantizer = block.mlp.fc2.input_quantizer
        assert type(quantizer) is ActivationQuantizer and quantizer.kind == "symmetric"
    assert coverage(quantized).opt_m == []


@pytest.mark.parametrize(
    ("kind", "quantizer"),
    [("two_scale", TwoScaleSoftmaxQuantizer), ("log2", Log2Quantizer), ("uniform", ActivationQuantizer)],
)
def test_quantized_copy_gives_every_attention_the_softmax_quantizer_asked_for(kind, quantizer):
    assert set(SOFTMAX_QUANTIZERS) == {"two_scale", "log2", "uniform"}
    quantized = quantized_copy(tiny_vit(), softmax=kind)
    for block in quantized.blocks:
        assert type(block.attn.av.left) is quantizer and block.attn.softmax_kind == kind
        assert type(block.attn.qk.left) is ActivationQuantizer and block.attn.qk.left.kind == "symmetric"
    if kind == "uniform":
        assert quantized.blocks[0].attn.av.left.kind == "asymmetric"  # softmax outputs are non-negative
    assert coverage(quantized).softmax == kind


def test_quant_attention_defaults_to_the_two_scale_softmax_quantizer():
    attention = QuantAttention(Attention(16, 2))
    assert attention.softmax_kind == "two_scale" and type(attention.av.left) is TwoScaleSoftmaxQuantizer


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")
def test_quantized_copy_swaps_every_linear_with_weights_and_only_those():
    """A 1×1 Linear is quantised like any other; a Linear with no weights (0 outputs) has nothing to round."""
    model = nn.Sequential(nn.Linear(1, 1), nn.Linear(1, 0))
    quantized = quantized_copy(model)
    assert list(quantized_layers(quantized)) == ["0"]
    assert type(quantized[1]) is nn.Linear


def test_a_quantized_copy_initialises_no_parameters_of_its_own():
    """The swapped layers are built on the meta device and take over the original's parameters: building
    them allocates and initialises no weights, so the global random stream is where it was."""
    model = tiny_vit()
    torch.manual_seed(0)
    expected = torch.rand(8)
    torch.manual_seed(0)
    quantized = quantized_copy(model)
    assert torch.equal(torch.rand(8), expected)
    assert quantized.patch_embed.weight.device.type == "cpu" and quantized.head.weight.device.type == "cpu"
    assert torch.equal(quantized.patch_embed.weight, model.patch_embed.weight)


def test_a_fresh_quantized_copy_is_float_and_its_layers_say_so():
    """Float until `set_precision`: every width is None, and the forward is the model's."""
    model = tiny_vit()
    quantized = quantized_copy(model)
    test_images = images(4, seed=1)
    torch.testing.assert_close(quantized(test_images), model(test_images), atol=1e-5, rtol=0)
    assert quantized.head.extra_repr() == (
        "in_features=16, out_features=10, bias=True, weight_bits=None, activation_bits=None, fixed_bits=8"
    )
    assert quantized.blocks[0].attn.qkv.extra_repr() == (
        "in_features=16, out_features=48, bias=True, weight_bits=None, activation_bits=None"
    )
    assert quantized.patch_embed.extra_repr() == (
        "1, 16, kernel_size=(7, 7), stride=(7, 7), weight_bits=None, activation_bits=None, fixed_bits=8"
    )
    assert quantized.blocks[0].attn.qk.extra_repr() == "activation_bits=None"


class PaddedPatches(nn.Module):
    """A patch embedding (kernel = stride) with circular padding, then a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(1, 3, 4, stride=4, padding=2, padding_mode="circular", bias=False)
        self.head = nn.Linear(3 * 4 * 4, 5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.patch_embed(images).flatten(1))  # (B, 3, 4, 4) → (B, 5)


def test_the_quantized_patch_embedding_keeps_the_convolutions_settings():
    torch.manual_seed(0)
    model = PaddedPatches().eval()
    quantized = quantized_copy(model)
    assert isinstance(quantized.patch_embed, QuantConv2d) and quantized.patch_embed.padding_mode == "circular"
    assert quantized.patch_embed.bias is None
    inputs = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(quantized(inputs), model(inputs), atol=0, rtol=0)


# ------------------------------------------------------------------------------------------- OPT-m sites


def test_post_gelu_linears_are_the_linears_a_gelu_feeds_past_dropout():
    sequence = nn.Sequential(
        nn.Linear(4, 8), nn.GELU(), nn.Dropout(0.1), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4), nn.GELU(),
        nn.Linear(4, 4),
    )  # fmt: skip
    found = post_gelu_linears(sequence)
    assert len(found) == 2 and found[0] is sequence[3] and found[1] is sequence[7]
    mlp = Mlp(4, 8)
    assert post_gelu_linears(mlp) == [mlp.fc2]
    assert post_gelu_linears(nn.Linear(4, 4)) == []


def test_opt_m_takes_only_linears_after_a_gelu():
    """ViR's residual MLP (Linear → GELU → Dropout → Linear) gets OPT-m on its second Linear; MobileViT's
    transformer MLP, whose activation is SiLU, does not."""
    assert coverage(quantized_copy(tiny_vir())).opt_m == ["blocks.0.mlp.3"]
    layer = TransformerLayer(16, 2, 2.0, 0.0, 0.0, patch_area=4)
    assert post_gelu_linears(layer.mlp) == []
    quantized = quantized_copy(layer)
    assert type(quantized.mlp.fc2.input_quantizer) is ActivationQuantizer and coverage(quantized).opt_m == []


# ------------------------------------------------------------------------------------------------ coverage


def test_coverage_names_the_softmax_kind_only_when_every_attention_shares_it():
    model = tiny_vit()
    quantized = quantized_copy(model)
    assert coverage(quantized).softmax == "two_scale"
    quantized.blocks[1].attn = QuantAttention(model.blocks[1].attn, "log2")
    assert coverage(quantized).softmax is None  # two kinds
    assert coverage(quantized_copy(nn.Sequential(nn.Linear(4, 2)))).softmax is None  # no attention


class TokenModel(nn.Module):
    """An embedding table (a float matrix), a LayerNorm (vectors only) and a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(5, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.embedding(tokens)))


def test_coverage_lists_the_float_leaves_that_hold_a_matrix():
    covered = coverage(quantized_copy(TokenModel()))
    assert covered.float_layers == ["embedding"] and covered.layers == ["head"]


# ---------------------------------------------------------------------------------------- the products


def test_quant_linear_rounds_its_weight_on_a_per_channel_grid():
    torch.manual_seed(0)
    linear = nn.Linear(6, 3)
    layer = QuantLinear(linear, ActivationQuantizer("symmetric"))
    layer.set_bits(4, None)  # the input stays float
    inputs = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    steps = linear.weight.detach().double().abs().amax(dim=1, keepdim=True) / 7  # (3, 1)
    expected = inputs.double() @ float64_fake_quantize(linear.weight.detach(), steps, 4).T + linear.bias.double()
    torch.testing.assert_close(layer(inputs).double(), expected, atol=1e-6, rtol=0)
    assert not torch.allclose(layer(inputs), linear(inputs), atol=1e-3)  # the rounding is visible


def test_quant_conv2d_rounds_its_weight_on_a_per_channel_grid():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 2, stride=2)
    layer = QuantConv2d(conv)
    layer.set_bits(3, None)
    inputs = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    steps = conv.weight.detach().double().flatten(1).abs().amax(dim=1).view(3, 1, 1, 1) / 3
    weight = float64_fake_quantize(conv.weight.detach(), steps, 3)
    expected = nn.functional.conv2d(inputs.double(), weight, conv.bias.double(), stride=2)
    torch.testing.assert_close(layer(inputs).double(), expected, atol=1e-6, rtol=0)


def test_a_layer_fits_its_input_grid_through_its_own_weight():
    """The input grid minimises the error of the layer's output: with a weight that ignores the wide
    feature (column 0), clipping it costs nothing and the grid resolves the narrow feature finely."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.cat(
        [20 * torch.rand(256, 1, generator=generator) - 10, 2 * torch.rand(256, 1, generator=generator) - 1], 1
    )
    linear = nn.Linear(2, 1)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[0.0, 1.0]]))
    layer = QuantLinear(linear, observed(ActivationQuantizer("symmetric"), rows))
    layer.set_bits(None, 4)
    through_weight = float64_symmetric_scale(rows, 4, linear.weight.detach())
    assert through_weight != pytest.approx(float64_symmetric_scale(rows, 4))  # the weight changes the choice
    assert layer.input_quantizer.fitted[4].scale == pytest.approx(through_weight, rel=1e-6)


def test_quant_matmul_rounds_both_inputs():
    generator = torch.Generator().manual_seed(0)
    left, right = torch.randn(3, 4, 5, generator=generator), torch.randn(3, 5, 2, generator=generator)
    product = QuantMatmul(
        observed(ActivationQuantizer("symmetric"), left), observed(ActivationQuantizer("symmetric"), right)
    )
    product.set_bits(4)
    left_rows, right_rows = left.reshape(-1, 5), right.reshape(-1, 2)  # the rows each quantiser saw
    expected = float64_fake_quantize(left, float64_symmetric_scale(left_rows, 4), 4) @ float64_fake_quantize(
        right, float64_symmetric_scale(right_rows, 4), 4
    )
    torch.testing.assert_close(product(left, right).double(), expected, atol=1e-5, rtol=0)
    assert product.extra_repr() == "activation_bits=4"


def test_quant_attention_steps_are_attentions_at_float_precision():
    """The overridden steps compute Attention's function, batched (B, H, T, d) or not (H, T, d)."""
    torch.manual_seed(0)
    attention = Attention(16, 2).eval()
    quantized = QuantAttention(attention).eval()
    generator = torch.Generator().manual_seed(1)
    for shape in [(2, 2, 5, 8), (2, 5, 8)]:
        q, k, v = (torch.randn(shape, generator=generator) for _ in range(3))
        torch.testing.assert_close(quantized.scores(q, k), attention.scores(q, k), atol=0, rtol=0)
        weights = attention.softmax(attention.scores(q, k))
        torch.testing.assert_close(quantized.weighted_values(weights, v), weights @ v, atol=0, rtol=0)


def test_quant_attention_drops_attention_weights_in_training_only():
    torch.manual_seed(0)
    attention = Attention(16, 2, attention_dropout=0.5).eval()
    quantized = QuantAttention(attention).eval()
    tokens = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(quantized(tokens), attention(tokens), atol=1e-6, rtol=0)  # eval: no dropout
    weights = torch.rand(2, 2, 5, 5, generator=torch.Generator().manual_seed(2))
    values = torch.randn(2, 2, 5, 8, generator=torch.Generator().manual_seed(3))
    quantized.train()
    torch.manual_seed(4)
    dropped = quantized.weighted_values(weights, values)
    torch.manual_seed(4)
    torch.testing.assert_close(dropped, nn.functional.dropout(weights, 0.5, True) @ values, atol=0, rtol=0)


def test_quant_readout_casts_the_states_to_the_tokens_dtype_as_the_readout_does():
    torch.manual_seed(0)
    readout = Readout(16, 40)
    quantized = QuantReadout(readout)
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randn(2, 5, 16, generator=generator)
    states = torch.rand(2, 5, 40, generator=generator, dtype=torch.float64) * 2 - 1  # float64 tanh states
    output = quantized(tokens, states)
    assert output.dtype == torch.float32
    torch.testing.assert_close(output, readout(tokens, states), atol=1e-6, rtol=0)


def test_vir_readout_sizes_count_every_input_segment():
    """Numbers per image entering each readout: T = 16 tokens of [x ; h] (D + N = 16 + 40), and of
    [x ; h ; o ; x² ; h² ; o²] (4D + 2N = 144), summed over the segments' quantisers."""
    quantized = calibrated_copy(tiny_vir(), images(8))
    _, activations = unit_sizes(quantized)
    assert activations["readouts.0.state_readout"] == 16 * (16 + 40)
    assert activations["readouts.0.quadratic_readout"] == 16 * (4 * 16 + 2 * 40)
    parts = quantized.readouts[0].state_readout.input_quantizer.parts
    assert [part.values_per_image for part in parts] == [16 * 16, 16 * 40]
