"""Each ViR ablation control removes exactly what it says, and stochastic depth acts only in training."""

import pytest
import torch

from lit_vir.models import ViR, count_parameters
from lit_vir.models.vir import LinearReadout, Readout

TINY = dict(num_nodes=24, jump_size=5, embed_dim=8, mlp_dim=16)


def tiny_vir(**options) -> ViR:
    return ViR(num_classes=5, image_size=8, in_channels=3, patch_size=2, **(TINY | options))


def test_no_reservoir_has_no_reservoir_and_no_state_columns():
    model = tiny_vir(use_reservoir=False, depth=2)
    assert len(model.reservoirs) == 0
    for readout in model.readouts:
        assert readout.state_readout.in_features == 8  # [x_t] only
        assert readout.quadratic_readout.in_features == 4 * 8  # [x ; o ; x² ; o²]
    assert count_parameters(model).fixed == 0


@pytest.mark.parametrize("depth", [1, 3])
def test_no_reservoir_differs_from_vir_only_by_the_state_columns(depth):
    full = count_parameters(tiny_vir(depth=depth))
    ablated = count_parameters(tiny_vir(depth=depth, use_reservoir=False))
    assert full.trainable - ablated.trainable == depth * 3 * 24 * 8  # W_o: N columns, W_q: 2N, each of height D


def test_reference_no_reservoir_removes_384_000_trainable_parameters():
    full = count_parameters(ViR(num_classes=10, image_size=28, in_channels=1))
    ablated = count_parameters(ViR(num_classes=10, image_size=28, in_channels=1, use_reservoir=False))
    assert full.trainable - ablated.trainable == 384_000


def test_memoryless_states_are_tanh_of_the_drive_with_the_full_reservoirs_v():
    model, full = tiny_vir(memoryless=True, depth=2), tiny_vir(depth=2)
    reservoir = model.reservoirs[0]
    assert int(torch.count_nonzero(reservoir.weight)) == 0
    assert torch.equal(reservoir.input_weight, full.reservoirs[0].input_weight)
    tokens = torch.randn(3, 16, 8)
    expected = torch.tanh(torch.einsum("btd,ldn->lbtn", tokens, reservoir.input_weight))
    assert torch.allclose(reservoir(tokens), expected, atol=1e-6)
    assert not torch.allclose(full.reservoirs[0](tokens), expected, atol=1e-3)  # the recurrence does matter


def test_memoryless_with_a_gradient_to_its_input_still_gives_tanh_of_the_drive():
    model = tiny_vir(memoryless=True, mode="serial", depth=2)
    tokens = torch.randn(2, 16, 8, requires_grad=True)
    states = model.reservoirs[1](tokens)
    expected = torch.tanh(tokens @ model.reservoirs[1].input_weight[0])
    assert torch.allclose(states[0], expected, atol=1e-6)
    states.sum().backward()
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0


def test_linear_readout_is_one_linear_map_of_tokens_and_states():
    model = tiny_vir(readout="linear")
    readout = model.readouts[0]
    assert isinstance(readout, LinearReadout) and not isinstance(readout, Readout)
    assert [name for name, _ in readout.named_parameters()] == ["linear.weight", "linear.bias"]
    tokens, states = torch.randn(2, 16, 8), torch.randn(2, 16, 24)
    expected = torch.cat([tokens, states], dim=-1) @ readout.linear.weight.T + readout.linear.bias
    assert torch.allclose(readout(tokens, states), expected, atol=1e-6)


def test_shuffled_tokens_is_one_fixed_permutation_from_the_seed():
    model = tiny_vir(token_order="shuffled")
    order = model.token_order
    assert sorted(order.tolist()) == list(range(16)) and order.tolist() != list(range(16))
    assert torch.equal(order, tiny_vir(token_order="shuffled").token_order)
    assert not torch.equal(order, tiny_vir(token_order="shuffled", seed=7).token_order)
    images = torch.randn(2, 3, 8, 8)
    assert torch.equal(model.embed(images), model.embedding(images)[:, order])
    assert tiny_vir().token_order is None


def test_drop_path_at_rate_zero_is_the_model_without_it():
    torch.manual_seed(0)
    plain = tiny_vir(depth=2, mode="serial")
    torch.manual_seed(0)
    explicit = tiny_vir(depth=2, mode="serial", drop_path_rate=0.0)
    images = torch.randn(4, 3, 8, 8)
    assert torch.equal(plain.train()(images), explicit.train()(images))


def test_drop_path_is_stochastic_in_training_only():
    torch.manual_seed(0)
    dropping = tiny_vir(depth=2, drop_path_rate=0.5)
    plain = tiny_vir(depth=2)
    plain.load_state_dict(dropping.state_dict())
    images = torch.randn(16, 3, 8, 8)
    dropping.train()
    first, second = dropping(images), dropping(images)
    assert not torch.allclose(first, second)
    assert torch.equal(dropping.eval()(images), plain.eval()(images))


def test_drop_path_rates_follow_the_linear_rule_in_serial_and_are_equal_in_parallel():
    serial = tiny_vir(depth=4, mode="serial", drop_path_rate=0.2)
    assert [block.drop_path.p for block in serial.blocks] == pytest.approx([0.05, 0.1, 0.15, 0.2])
    parallel = tiny_vir(depth=3, drop_path_rate=0.2)
    assert [block.drop_path.p for block in parallel.blocks] == [0.2, 0.2, 0.2]
