"""The reservoir computes exactly the spec's recurrence, per image, from h_0 = 0."""

import torch

from lit_vir.models.reservoir import Reservoir


def reference_states(tokens, weight, input_weight, leak_rate, bias=None):
    """The spec's recurrence written out step by step for one reservoir, in float64."""
    batch, steps, _ = tokens.shape
    states = torch.zeros(batch, steps, weight.shape[0], dtype=torch.float64)
    for image in range(batch):
        state = torch.zeros(weight.shape[0], dtype=torch.float64)
        for step in range(steps):
            drive = tokens[image, step] @ input_weight
            if bias is not None:
                drive = drive + bias
            state = (1 - leak_rate) * state + leak_rate * torch.tanh(state @ weight + drive)
            states[image, step] = state
    return states


def tiny(**options) -> Reservoir:
    defaults = dict(num_nodes=40, jump_size=7, input_sparsity=0.3)
    return Reservoir(8, **(defaults | options)).double()


def test_matches_step_by_step_reference_loop():
    reservoir = tiny()
    tokens = torch.randn(3, 9, 8, dtype=torch.float64)
    expected = reference_states(tokens, reservoir.weight[0], reservoir.input_weight[0], 1.0)
    assert torch.allclose(reservoir(tokens)[0], expected, atol=1e-6, rtol=0)


def test_matches_reference_loop_with_leak_and_bias():
    reservoir = tiny(leak_rate=0.3, bias_scaling=0.5, signed_input=True)
    tokens = torch.randn(2, 6, 8, dtype=torch.float64)
    expected = reference_states(tokens, reservoir.weight[0], reservoir.input_weight[0], 0.3, reservoir.bias[0])
    assert torch.allclose(reservoir(tokens)[0], expected, atol=1e-6, rtol=0)


def test_bank_matches_each_reservoir_alone():
    bank = tiny(num_reservoirs=3, seed=10)
    tokens = torch.randn(2, 5, 8, dtype=torch.float64)
    states = bank(tokens)  # (L, B, T, N)
    for index in range(3):
        alone = tiny(seed=10 + index)
        assert torch.equal(alone.weight[0], bank.weight[index])
        assert torch.allclose(states[index], alone(tokens)[0], atol=1e-12)


def test_every_image_starts_from_zero_state():
    reservoir = tiny()
    first, second = torch.randn(1, 6, 8, dtype=torch.float64), torch.randn(1, 6, 8, dtype=torch.float64)
    together = reservoir(torch.cat([first, second]))[0]
    assert torch.allclose(together[1], reservoir(second)[0, 0], atol=1e-12)
    assert torch.allclose(reservoir(second)[0], reservoir(second)[0])  # no state carried between calls


def test_matrices_are_buffers_not_parameters():
    reservoir = Reservoir(8, num_nodes=20, jump_size=3, bias_scaling=0.1)
    assert list(reservoir.parameters()) == []
    assert set(reservoir.state_dict()) == {"weight", "input_weight", "bias"}


def test_recurrence_stays_float32_under_bf16_autocast():
    reservoir = Reservoir(8, num_nodes=20, jump_size=3)
    tokens = torch.randn(2, 4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        states = reservoir(tokens)
    assert states.dtype == torch.float32
    assert torch.allclose(states, reservoir(tokens), atol=1e-6)
