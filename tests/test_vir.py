"""ViR's assembly: shapes, which parts learn, and the spec's parameter counts."""

import pytest
import torch

from lit_vir.checks import ConfigError
from lit_vir.models import ViR, count_parameters, vit_base
from lit_vir.models.vir import ClassifierHead, LinearReadout, PatchEmbedding, Readout, ResidualMlp, linear_of_square

TINY = dict(num_nodes=24, jump_size=5, embed_dim=8, mlp_dim=16)


def tiny_vir(**options) -> ViR:
    return ViR(num_classes=5, image_size=8, in_channels=3, patch_size=4, **(TINY | options))


def loss_gradients(model: ViR) -> dict[str, torch.Tensor | None]:
    model.zero_grad()
    model(torch.randn(2, 3, 8, 8)).square().sum().backward()
    return {name: parameter.grad for name, parameter in model.named_parameters()}


@pytest.mark.parametrize("pooling", ["flatten", "mean", "last"])
@pytest.mark.parametrize(("mode", "depth"), [("parallel", 1), ("parallel", 3), ("serial", 3)])
def test_output_shape(mode, depth, pooling):
    model = tiny_vir(mode=mode, depth=depth, pooling=pooling)
    assert model(torch.randn(4, 3, 8, 8)).shape == (4, 5)
    assert model.forward_features(torch.randn(4, 3, 8, 8)).shape == (4, 4, 8)  # (B, T, D)


def test_patches_are_row_major_and_flattened_row_col_channel():
    embedding = PatchEmbedding(image_size=4, in_channels=2, patch_size=2, embed_dim=8)
    image = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)  # value = c·16 + y·4 + x
    captured = {}
    embedding.projection.register_forward_hook(lambda module, inputs, output: captured.update(patches=inputs[0]))
    embedding(image)
    patches = captured["patches"][0]  # (T, P·P·C)
    assert patches.shape == (4, 8)
    # patch 1 is the top-right block (row-major); entries run over (p1, p2, c)
    expected = [c * 16 + y * 4 + x for y in (0, 1) for x in (2, 3) for c in (0, 1)]
    assert patches[1].tolist() == expected


def test_readout_computes_the_spec_equations():
    readout = Readout(embed_dim=6, num_nodes=9).double()
    tokens, states = torch.randn(2, 5, 6, dtype=torch.float64), torch.rand(2, 5, 9, dtype=torch.float64)
    linear = torch.cat([tokens, states], dim=-1)
    output = torch.tanh(linear @ readout.state_readout.weight.T + readout.state_readout.bias)
    features = torch.cat([tokens, states, output, tokens**2, states**2, output**2], dim=-1)
    expected = torch.tanh(features @ readout.quadratic_readout.weight.T + readout.quadratic_readout.bias)
    assert torch.allclose(readout(tokens, states), expected, atol=1e-12)


@pytest.mark.parametrize("readout_class", [Readout, LinearReadout])
def test_readouts_take_float32_states_into_a_float64_readout(readout_class):
    readout = readout_class(embed_dim=6, num_nodes=9).double()
    assert (readout.embed_dim, readout.num_nodes) == (6, 9)  # the widths (D, N) it splits its columns by
    tokens, states = torch.randn(2, 5, 6, dtype=torch.float64), torch.rand(2, 5, 9)  # states: the buffers' float32
    assert torch.equal(readout(tokens, states), readout(tokens, states.double()))


def test_linear_of_square_has_the_gradients_of_its_definition():
    inputs = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(linear_of_square, (inputs, weight))
    assert torch.allclose(linear_of_square(inputs, weight), inputs.square() @ weight.T)


def test_a_training_step_runs_under_bf16_autocast():
    model = tiny_vir(depth=2, train_embedding=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(torch.randn(2, 3, 8, 8)).float().square().sum()
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("num_classes", 0, "num_classes = 0 is outside the allowed range [1, inf)."),
        ("in_channels", 0, "in_channels = 0 is outside the allowed range [1, inf)."),
        ("patch_size", 3, "patch_size (P) = 3 does not divide image_size = 8; choose one of [1, 2, 4, 8]."),
        ("embed_dim", 0, "embed_dim (D) = 0 is outside the allowed range [1, inf)."),
        ("depth", 0, "depth (L) = 0 is outside the allowed range [1, inf)."),
        ("mode", "chain", "mode = 'chain' is not one of 'parallel', 'serial'."),
        ("mlp_dim", 0, "mlp_dim (M) = 0 is outside the allowed range [1, inf)."),
        ("dropout", 1.5, "dropout = 1.5 is outside the allowed range [0, 1)."),
        ("drop_path_rate", -0.1, "drop_path_rate = -0.1 is outside the allowed range [0, 1)."),
        ("pooling", "max", "pooling = 'max' is not one of 'flatten', 'mean', 'last'."),
        ("readout", "cubic", "readout = 'cubic' is not one of 'quadratic', 'linear'."),
        ("token_order", "random", "token_order = 'random' is not one of 'raster', 'shuffled'."),
    ],
)
def test_each_option_is_refused_with_its_name_value_and_range(option, value, message):
    sizes = dict(num_classes=5, image_size=8, in_channels=3, patch_size=4)
    with pytest.raises(ConfigError) as error:
        ViR(**(sizes | TINY | {option: value}))
    assert str(error.value) == f"ViR: {message}"


def test_the_smallest_allowed_widths_build_and_run():
    model = tiny_vir(embed_dim=1, mlp_dim=1, depth=1)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 5)


def test_defaults_are_the_reference_cifar_settings():
    model = ViR(num_nodes=32, jump_size=5)  # only the reservoir shrunk
    assert model.num_classes == model.head.linear.out_features == 10 and model.depth == 1 and model.mode == "parallel"
    assert model.embedding.num_patches == 64 and model.embedding.projection.in_features == 4 * 4 * 3
    assert model.embedding.projection.out_features == 128 and model.blocks[0].mlp[0].out_features == 512
    assert model.reservoirs[0].seed == 42 and model.head.pooling == "flatten"
    assert not model.detach and not model.train_embedding and model.token_order is None


def test_residual_mlp_and_head_defaults_and_layers():
    block = ResidualMlp(4, 8)
    assert [type(layer) for layer in block.mlp] == [
        torch.nn.Linear,
        torch.nn.GELU,
        torch.nn.Dropout,
        torch.nn.Linear,
        torch.nn.Dropout,
    ]
    assert block.mlp[2].p == block.mlp[4].p == 0.0 and block.drop_path.p == 0.0
    dropping = ResidualMlp(4, 8, dropout=0.3, drop_path_rate=0.2)
    assert dropping.mlp[2].p == dropping.mlp[4].p == 0.3 and dropping.drop_path.p == 0.2
    assert ClassifierHead(3, 4, 2).pooling == "flatten" and ClassifierHead(3, 4, 2).linear.in_features == 12


def test_state_cache_refusal_says_what_is_needed_and_what_was_given():
    with pytest.raises(ConfigError) as error:
        tiny_vir(mode="serial", depth=2).enable_state_cache(8)
    assert str(error.value) == (
        "ViR: caching reservoir states needs mode = 'parallel', train_embedding = false (the states must depend on "
        "the image alone) and a reservoir (use_reservoir = true); got mode = 'serial', train_embedding = False, "
        "use_reservoir = True."
    )


def test_state_cache_lives_on_the_reservoirs_device():
    cache = tiny_vir(depth=2).to("meta").enable_state_cache(4)  # the meta device stands in for a GPU
    assert cache.states.device.type == "meta" and cache.keys.device.type == "meta"
    assert cache.states.shape == (4, 2, 4, 24)  # (capacity, L, T, N)


def test_a_bfloat16_state_cache_returns_the_missed_states_at_full_precision():
    model = tiny_vir(depth=2).eval()
    images = torch.randn(3, 3, 8, 8)
    expected = model(images)
    model.enable_state_cache(4, dtype=torch.bfloat16)
    assert torch.equal(model(images), expected)  # nothing cached in evaluation: every state computed in float32


def test_no_gradient_reaches_reservoir_matrices_which_are_buffers():
    model = tiny_vir(depth=2)
    loss_gradients(model)
    names = {name for name, _ in model.named_parameters()}
    assert not any("reservoirs" in name for name in names)
    assert {"weight", "input_weight"} <= {name.rsplit(".", 1)[-1] for name, _ in model.named_buffers()}


def test_fixed_embedding_gets_no_gradient_but_readouts_and_head_do():
    gradients = loss_gradients(tiny_vir())
    assert gradients["embedding.projection.weight"] is None
    for name in (
        "readouts.0.state_readout.weight",
        "readouts.0.quadratic_readout.weight",
        "blocks.0.mlp.0.weight",
        "head.linear.weight",
    ):
        assert gradients[name] is not None and gradients[name].abs().sum() > 0


def test_train_embedding_lets_gradient_reach_the_embedding():
    gradients = loss_gradients(tiny_vir(train_embedding=True))
    assert gradients["embedding.projection.weight"].abs().sum() > 0


def test_serial_earlier_cores_learn_through_later_reservoirs():
    gradients = loss_gradients(tiny_vir(mode="serial", depth=3))
    for core in range(3):
        assert gradients[f"readouts.{core}.quadratic_readout.weight"].abs().sum() > 0


def test_serial_detach_cuts_earlier_cores_off():
    gradients = loss_gradients(tiny_vir(mode="serial", depth=3, detach=True))
    for core in (0, 1):
        assert gradients[f"readouts.{core}.quadratic_readout.weight"] is None
    assert gradients["readouts.2.quadratic_readout.weight"].abs().sum() > 0


def test_parallel_cores_all_learn():
    gradients = loss_gradients(tiny_vir(depth=3))
    for core in range(3):
        assert gradients[f"readouts.{core}.state_readout.weight"].abs().sum() > 0


def test_parallel_core_reservoirs_equal_serial_ones():
    parallel, serial = tiny_vir(depth=3, seed=5), tiny_vir(depth=3, seed=5, mode="serial")
    for core in range(3):
        assert torch.equal(parallel.reservoirs[0].weight[core], serial.reservoirs[core].weight[0])


@pytest.mark.parametrize(("depth", "trainable"), [(1, 702_730), (3, 1_899_018), (6, 3_693_450), (12, 7_282_314)])
def test_parameter_counts_at_reference_settings_equal_the_spec(depth, trainable):
    counts = count_parameters(ViR(num_classes=10, image_size=32, in_channels=3, depth=depth))
    assert counts.trainable == trainable
    assert counts.fixed == 1_128_000 * depth


def test_fixed_embedding_is_counted_as_frozen_unless_trained():
    assert count_parameters(ViR(num_nodes=32, jump_size=5)).frozen == 6_272
    assert count_parameters(ViR(num_nodes=32, jump_size=5, train_embedding=True)).frozen == 0


def test_reference_parts_have_the_spec_sizes():
    model = ViR(num_classes=10, image_size=32, in_channels=3)
    size = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert size(model.embedding) == 6_272
    assert size(model.head) == 98_314
    assert size(model.readouts[0]) + size(model.blocks[0]) == 598_144


def test_vir_trainable_parameters_are_within_the_claimed_share_of_vit_base():
    """The paper claims about 5–15% of a ViT-Base of the same depth: at depth 1, the spec's 702,730 (above) of
    7,185,418 (ViT-Base's embedding, block and head by hand, as in test_vit's `vit_parameters`), 9.78%."""
    vir, vit = count_parameters(ViR(depth=1)).trainable, count_parameters(vit_base(depth=1)).trainable
    assert (vir, vit) == (702_730, 7_185_418)
    assert 0.05 <= vir / vit <= 0.15  # the claim itself is a range; the counts above are exact
