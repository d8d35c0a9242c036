"""The reservoir computes exactly the spec's recurrence, per image, from h_0 = 0."""

import pytest
import torch

from lit_vir.checks import ConfigError
from lit_vir.models import reservoir as reservoir_module
from lit_vir.models.reservoir import Reservoir, draw_matrices, reservoir_step
from lit_vir.models.reservoir_options import ReservoirOptions
from lit_vir.models.topology import input_matrix, nearly_fully_connected


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


@pytest.mark.parametrize("signed", [False, True])
def test_the_bias_is_drawn_after_w_and_v_as_s_times_2u_minus_1(signed):
    options = ReservoirOptions(num_nodes=20, jump_size=3, bias_scaling=0.4, signed_input=signed)
    generator = torch.Generator().manual_seed(11)
    nearly_fully_connected(options, generator)  # W first, then V: the draws the bias follows
    expected_inputs = input_matrix(8, 20, generator, density=options.input_density, signed=signed)
    uniform = torch.rand(20, generator=generator, dtype=torch.float64)
    _, inputs, bias = draw_matrices(options, 8, seed=11)
    assert torch.equal(inputs, expected_inputs) and bool((inputs < 0).any()) == signed
    assert torch.allclose(bias, 0.4 * (2 * uniform - 1), atol=1e-15, rtol=0)
    assert draw_matrices(ReservoirOptions(num_nodes=20, jump_size=3), 8, seed=11)[2] is None  # s = 0: no bias


def test_memoryless_zeroes_w_and_keeps_the_full_reservoirs_v():
    full = draw_matrices(ReservoirOptions(num_nodes=20, jump_size=3), 8, seed=4)
    memoryless = draw_matrices(ReservoirOptions(num_nodes=20, jump_size=3, memoryless=True), 8, seed=4)
    assert torch.count_nonzero(memoryless[0]) == 0 and torch.count_nonzero(full[0]) == 20 * 20 - 1
    assert torch.equal(memoryless[1], full[1])


def test_buffers_are_the_float64_draws_in_the_default_dtype():
    reservoir = Reservoir(8, num_nodes=20, jump_size=3, bias_scaling=0.2, num_reservoirs=2, seed=6)
    for index in range(2):
        weight, inputs, bias = draw_matrices(reservoir.options, 8, seed=6 + index)
        assert reservoir.weight.dtype == reservoir.input_weight.dtype == reservoir.bias.dtype == torch.float32
        assert torch.equal(reservoir.weight[index], weight.float())
        assert torch.equal(reservoir.input_weight[index], inputs.float())
        assert torch.equal(reservoir.bias[index], bias.float())


def test_repr_names_the_settings():
    reservoir = Reservoir(8, num_nodes=20, jump_size=3, num_reservoirs=2, leak_rate=0.5, seed=7)
    assert reservoir.extra_repr() == "in_features=8, num_nodes=20, num_reservoirs=2, leak_rate=0.5, seed=7"


def test_without_a_graph_the_states_overwrite_the_drive_and_with_one_they_do_not():
    reservoir = tiny(leak_rate=0.5)
    drive = reservoir.drive(torch.randn(2, 4, 8, dtype=torch.float64))
    assert reservoir.states(drive) is drive  # in its own memory
    needing = drive.clone().requires_grad_()
    states = reservoir.states(needing)
    assert states is not needing and states.grad_fn is not None
    with torch.no_grad():
        assert reservoir.states(needing) is needing  # no graph to build: in place even for a leaf


def test_memoryless_without_leak_is_tanh_of_the_drive_at_every_step():
    reservoir = tiny(memoryless=True, bias_scaling=0.3)
    tokens = torch.randn(2, 5, 8, dtype=torch.float64)
    expected = torch.tanh(tokens @ reservoir.input_weight[0] + reservoir.bias[0])
    assert torch.allclose(reservoir(tokens)[0], expected, atol=1e-12, rtol=0)
    drive = reservoir.drive(tokens).requires_grad_()
    assert torch.allclose(reservoir.states(drive)[0], expected, atol=1e-12, rtol=0)


def test_identity_activation_step_is_the_linear_recurrence():
    state, drive = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    weight = torch.randn(5, 5, dtype=torch.float64)
    new, output = reservoir_step(state, drive, weight, leak_rate=0.25, activation="identity")
    assert torch.allclose(output, state @ weight + drive, atol=1e-12, rtol=0)
    assert torch.allclose(new, 0.75 * state + 0.25 * (state @ weight + drive), atol=1e-12, rtol=0)
    bank_new, _ = reservoir_step(state[None], drive[None], weight[None], leak_rate=0.25)
    assert torch.allclose(bank_new[0], 0.75 * state + 0.25 * torch.tanh(state @ weight + drive), atol=1e-12, rtol=0)


def test_sizes_are_checked_with_their_names_and_the_smallest_ones_work():
    with pytest.raises(ConfigError) as error:
        Reservoir(0, num_nodes=20, jump_size=3)
    assert str(error.value) == "Reservoir: in_features = 0 is outside the allowed range [1, inf)."
    with pytest.raises(ConfigError) as error:
        Reservoir(8, num_nodes=20, jump_size=3, num_reservoirs=0)
    assert str(error.value) == "Reservoir: num_reservoirs (L) = 0 is outside the allowed range [1, inf)."
    assert Reservoir(1, num_nodes=20, jump_size=3).input_weight.shape == (1, 1, 20)


def test_the_default_seed_is_42():
    reservoir = Reservoir(8, num_nodes=20, jump_size=3)
    assert reservoir.seed == 42
    assert torch.equal(reservoir.weight[0], draw_matrices(reservoir.options, 8, seed=42)[0].float())


def test_float64_tokens_drive_a_float32_reservoir_in_its_own_dtype():
    reservoir = Reservoir(8, num_nodes=20, jump_size=3)
    tokens = torch.randn(2, 4, 8, dtype=torch.float64)
    states = reservoir(tokens)
    assert states.dtype == torch.float32 and torch.equal(states, reservoir(tokens.float()))


def test_each_reservoir_of_a_bank_can_read_its_own_tokens():
    bank = tiny(num_reservoirs=3, leak_rate=0.7)
    tokens = torch.randn(3, 2, 5, 8, dtype=torch.float64)  # (L, B, T, D)
    states = bank(tokens)
    for index in range(3):
        expected = reference_states(tokens[index], bank.weight[index], bank.input_weight[index], 0.7)
        assert torch.allclose(states[index], expected, atol=1e-6, rtol=0)


def test_autocast_recurrence_runs_the_steps_in_bfloat16_with_a_graph():
    reservoir = Reservoir(8, num_nodes=20, jump_size=3, autocast_recurrence=True)
    tokens = torch.randn(2, 4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        states = reservoir(tokens)
        drive = reservoir.drive(tokens)
        assert reservoir.needs_graph(drive)  # the in-place kernels would not autocast
    assert states.dtype == torch.bfloat16
    assert torch.allclose(states.float(), reservoir(tokens), atol=0.05, rtol=0)  # bf16's 8-bit mantissa
    plain = Reservoir(8, num_nodes=20, jump_size=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not plain.needs_graph(plain.drive(tokens))


def test_memoryless_with_leak_follows_the_leaky_loop_and_without_it_overwrites_the_drive():
    leaky = tiny(memoryless=True, leak_rate=0.5)
    tokens = torch.randn(2, 5, 8, dtype=torch.float64)
    expected = reference_states(tokens, torch.zeros(40, 40, dtype=torch.float64), leaky.input_weight[0], 0.5)
    assert torch.allclose(leaky(tokens)[0], expected, atol=1e-12, rtol=0)
    plain = tiny(memoryless=True)
    drive = plain.drive(tokens)
    assert plain.states(drive) is drive


def test_only_checkpoint_recurrence_checkpoints_and_only_with_a_graph(monkeypatch):
    calls = []
    monkeypatch.setattr(
        reservoir_module, "checkpoint", lambda function, *args, **kwargs: calls.append(1) or function(*args)
    )
    drive = tiny().drive(torch.randn(2, 4, 8, dtype=torch.float64)).requires_grad_()
    tiny().recur(drive)
    assert calls == []
    tiny(checkpoint_recurrence=True).recur(drive)
    assert calls == [1]
    with torch.no_grad():
        tiny(checkpoint_recurrence=True).recur(drive)
    assert calls == [1]


def test_a_step_without_a_leak_rate_is_the_plain_tanh_recurrence():
    state, drive = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    weight = torch.randn(5, 5, dtype=torch.float64)
    new, output = reservoir_step(state, drive, weight)
    assert torch.allclose(new, torch.tanh(state @ weight + drive), atol=1e-15, rtol=0)
    assert torch.equal(new, output)


def test_keywords_override_the_options_given():
    options = ReservoirOptions(num_nodes=20, jump_size=3)
    reservoir = Reservoir(8, options, leak_rate=0.5, bias_scaling=0.1)
    assert reservoir.leak_rate == 0.5 and reservoir.bias is not None
    assert reservoir.options == ReservoirOptions(num_nodes=20, jump_size=3, leak_rate=0.5, bias_scaling=0.1)
