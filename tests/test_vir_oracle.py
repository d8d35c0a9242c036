"""ViR's logits against a plain, step-by-step float64 reading of the spec's equations with the model's weights.

The oracle below shares no code with `lit_vir.models.vir`: patches are cut with explicit loops, the recurrence,
readouts, LayerNorm, GELU and head are written out per image and per token from `vir.md`. It only reads the
model's parameters and fixed buffers (W, V, b, the shuffled token order); the settings (depth, mode, pooling,
readout kind, leak, ...) come from the case's options, not from the model's attributes, so a model that
ignores or mistypes one of them differs from the oracle.
"""

import math

import pytest
import torch

from lit_vir.models import ViR

IMAGE, CHANNELS, PATCH, CLASSES = 8, 2, 4, 3
TINY = dict(num_nodes=12, jump_size=5, embed_dim=6, mlp_dim=10)


def layer_norm(vector: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    mean = vector.mean()
    variance = ((vector - mean) ** 2).mean()
    return (vector - mean) / math.sqrt(variance + norm.eps) * norm.weight.double() + norm.bias.double()


def gelu(value: torch.Tensor) -> torch.Tensor:
    return 0.5 * value * (1.0 + torch.erf(value / math.sqrt(2.0)))


def linear(layer: torch.nn.Linear, vector: torch.Tensor) -> torch.Tensor:
    return layer.weight.double() @ vector + layer.bias.double()


def patch_tokens(model: ViR, image: torch.Tensor, settings: dict) -> list[torch.Tensor]:
    """x_t for one image: P×P patches row by row, each flattened over (row, column, channel), then W_e."""
    tokens = []
    for row in range(0, IMAGE, PATCH):
        for column in range(0, IMAGE, PATCH):
            pixels = [(y, x, c) for y in range(PATCH) for x in range(PATCH) for c in range(CHANNELS)]
            values = [image[c, row + y, column + x] for y, x, c in pixels]
            tokens.append(linear(model.embedding.projection, torch.stack(values).double()))
    if settings["token_order"] == "shuffled":
        tokens = [tokens[int(index)] for index in model.token_order]
    return tokens


def reservoir_states(weight, input_weight, bias, leak, tokens) -> list[torch.Tensor]:
    """h_t = (1 − a)·h_{t−1} + a·tanh(h_{t−1}·W + x_t·V + b), h_0 = 0 (row vectors)."""
    state, states = torch.zeros(weight.shape[0], dtype=torch.float64), []
    for token in tokens:
        drive = token @ input_weight.double() + (0.0 if bias is None else bias.double())
        state = (1 - leak) * state + leak * torch.tanh(state @ weight.double() + drive)
        states.append(state)
    return states


def core(model: ViR, index: int, tokens, states, settings: dict) -> list[torch.Tensor]:
    """Readouts → residual MLP for every token of one core (states None: no reservoir)."""
    readout, block = model.readouts[index], model.blocks[index]
    outputs = []
    for t, token in enumerate(tokens):
        linear_input = token if states is None else torch.cat([token, states[t]])
        if settings["readout"] == "quadratic":
            o = torch.tanh(linear(readout.state_readout, linear_input))
            if states is None:
                features = torch.cat([token, o, token**2, o**2])
            else:
                features = torch.cat([token, states[t], o, token**2, states[t] ** 2, o**2])
            y = torch.tanh(linear(readout.quadratic_readout, features))
        else:
            y = linear(readout.linear, linear_input)
        hidden = gelu(linear(block.mlp[0], layer_norm(y, block.norm)))
        outputs.append(y + linear(block.mlp[3], hidden))
    return outputs


def reservoir_of(model: ViR, index: int, settings: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if settings["mode"] == "parallel":
        bank, member = model.reservoirs[0], index
    else:
        bank, member = model.reservoirs[index], 0
    bias = None if bank.bias is None else bank.bias[member]
    return bank.weight[member], bank.input_weight[member], bias


DEFAULTS = dict(depth=1, mode="parallel", pooling="flatten", readout="quadratic", token_order="raster")
DEFAULTS |= dict(use_reservoir=True, leak_rate=1.0)


def oracle_logits(model: ViR, images: torch.Tensor, options: dict) -> torch.Tensor:
    settings = DEFAULTS | options
    logits = []
    for image in images:
        tokens = patch_tokens(model, image, settings)
        per_core = []
        for index in range(settings["depth"]):
            states = None
            if settings["use_reservoir"]:
                weight, input_weight, bias = reservoir_of(model, index, settings)
                states = reservoir_states(weight, input_weight, bias, settings["leak_rate"], tokens)
            outputs = core(model, index, tokens, states, settings)
            if settings["mode"] == "serial":
                tokens = outputs
            per_core.append(outputs)
        depth = settings["depth"]
        final = tokens if settings["mode"] == "serial" else [sum(z) / depth for z in zip(*per_core, strict=True)]
        head = model.head
        if settings["pooling"] == "flatten":
            pooled = torch.cat(final)
        elif settings["pooling"] == "mean":
            pooled = sum(final) / len(final)
        else:
            pooled = final[-1]
        logits.append(linear(head.linear, layer_norm(pooled, head.norm)))
    return torch.stack(logits)


CASES = {
    "single": dict(),
    "parallel-3": dict(depth=3),
    "serial-3": dict(depth=3, mode="serial"),
    "serial-3-detach": dict(depth=3, mode="serial", detach=True),
    "mean-pooling": dict(pooling="mean"),
    "last-pooling": dict(pooling="last", depth=2),
    "leaky-biased-signed": dict(leak_rate=0.6, bias_scaling=0.3, signed_input=True, spectral_radius=1.2),
    "trained-embedding": dict(train_embedding=True, depth=2, mode="serial"),
    "no_reservoir": dict(use_reservoir=False, depth=2),
    "no_reservoir-serial": dict(use_reservoir=False, depth=2, mode="serial"),
    "memoryless": dict(memoryless=True),
    "linear_readout": dict(readout="linear", depth=2),
    "shuffled_tokens": dict(token_order="shuffled", depth=2),
}


def built(**options) -> ViR:
    torch.manual_seed(0)
    model = ViR(CLASSES, IMAGE, CHANNELS, patch_size=PATCH, seed=3, **(TINY | options))
    with torch.no_grad():  # LayerNorm starts at (1, 0): give it values that a swapped weight/bias would show
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("case", CASES)
def test_logits_equal_the_step_by_step_float64_oracle(case):
    model = built(**CASES[case])
    images = torch.randn(3, CHANNELS, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1))
    expected = oracle_logits(model, images, CASES[case])
    assert torch.allclose(model.double()(images.double()), expected, atol=1e-9, rtol=0)


def test_float32_logits_equal_the_oracle_to_1e_6_relative():
    model = built(depth=3)
    images = torch.randn(2, CHANNELS, IMAGE, IMAGE, generator=torch.Generator().manual_seed(2))
    expected = oracle_logits(model, images, dict(depth=3))
    assert torch.allclose(model(images).double(), expected, atol=1e-5 * expected.abs().max().item(), rtol=0)
