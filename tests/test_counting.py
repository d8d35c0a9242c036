"""Parameter counts and FLOPs (`lit_vir.models.counting`) against counts by hand: trainable, frozen and fixed
weights; 2 FLOPs per multiply-add for the products torch's counter misses (in-place addmm_ and baddbmm_, the CPU
attention kernels); a training step counted as executed; the model and the random streams left as they were."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lit_vir.models import ViR, count_parameters
from lit_vir.models.counting import ParameterCount, forward_flops, training_flops


def test_trainable_frozen_and_fixed_are_counted_by_hand():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(4, 1))
    model[1].requires_grad_(False)
    assert count_parameters(model) == ParameterCount(trainable=8 + 5, frozen=5, fixed=0)
    vir = ViR(num_classes=10, image_size=8, in_channels=1, patch_size=4, num_nodes=16, jump_size=3, embed_dim=8,
              mlp_dim=8, depth=2, mode="serial", bias_scaling=0.2)  # fmt: skip
    counts = count_parameters(vir)
    assert counts.fixed == 2 * (16 * 16 + 8 * 16 + 16)  # W (N×N), V (D×N) and b (N) of each of two banks
    assert counts.frozen == 4 * 4 * 8 + 8  # the patch embedding (k²·C·D + D), frozen unless train_embedding
    assert counts.trainable == sum(parameter.numel() for parameter in vir.parameters())


class InPlace(nn.Module):
    """The reservoir's and the ridge's in-place products, which torch's counter does not count by itself."""

    def forward(self, left: torch.Tensor, right: torch.Tensor, batched_left, batched_right) -> torch.Tensor:
        out = torch.zeros(left.shape[0], right.shape[1]).addmm_(left, right)
        batched = torch.zeros(batched_left.shape[0], batched_left.shape[1], batched_right.shape[2])
        return out.sum() + batched.baddbmm_(batched_left, batched_right).sum()


def test_in_place_products_count_two_flops_per_multiply_add():
    with FlopCounterMode(display=False) as counter:
        InPlace()(torch.ones(5, 3), torch.ones(3, 4), torch.ones(2, 5, 3), torch.ones(2, 3, 7))
    assert counter.get_total_flops() == 2 * 5 * 3 * 4 + 2 * 2 * 5 * 3 * 7


def test_cpu_attention_counts_both_products_forward_and_five_backward():
    query, key, value = (torch.randn(1, 2, 5, 4, requires_grad=True) for _ in range(3))  # (B, heads, S, d)
    with FlopCounterMode(display=False) as counter:
        output = nn.functional.scaled_dot_product_attention(query, key, value)
    assert counter.get_total_flops() == 2 * (2 * 1 * 2 * 5 * 5 * 4)  # q·kᵀ and softmax·V
    with FlopCounterMode(display=False) as counter:
        output.sum().backward()
    # the flash kernel's backward recomputes q·kᵀ, then the gradients of the scores, V, q and k: five products
    assert counter.get_total_flops() == 5 * (2 * 1 * 2 * 5 * 5 * 4)


def test_a_training_step_is_counted_as_executed_and_leaves_the_model_and_the_random_streams_alone():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Dropout(0.5), nn.Linear(3, 2))
    model[1].requires_grad_(False)  # frozen: no weight gradient, and none flows into it
    model.eval()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    torch.manual_seed(0)
    expected_draw = torch.rand(3)
    torch.manual_seed(0)
    flops = training_flops(model, torch.ones(2, 1, 2, 2), num_classes=2)
    # forward 2·B·(4·3 + 3·2); backward the last layer's weight and input gradients, 2 · 2·B·3·2 (BatchNorm below
    # it is trained); nothing for the frozen first layer, whose input needs no gradient either
    assert flops == 2 * 2 * (4 * 3 + 3 * 2) + 2 * (2 * 2 * 3 * 2)
    assert torch.equal(torch.rand(3), expected_draw)  # the run's random numbers untouched
    assert all(torch.equal(tensor, before[name]) for name, tensor in model.state_dict().items())  # BatchNorm too
    assert not model.training and all(parameter.grad is None for parameter in model.parameters())


def test_an_inference_forward_is_counted_in_eval_mode_and_restores_the_mode():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(1.0))
    seen = []
    model[2].register_forward_hook(lambda module, inputs, output: seen.append((module.training, output.requires_grad)))
    model.train()
    assert forward_flops(model, torch.ones(5, 1, 2, 2)) == 2 * 5 * 4 * 3
    assert seen == [(False, False)] and model.training  # evaluated without a gradient; back to training after
    model.eval()
    forward_flops(model, torch.ones(5, 1, 2, 2))
    assert not model.training


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_counting_a_gpu_training_step_leaves_the_gpus_random_stream_alone():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.5)).cuda()
    torch.cuda.manual_seed(0)
    expected = torch.rand(3, device="cuda")
    torch.cuda.manual_seed(0)
    training_flops(model, torch.ones(2, 1, 2, 2, device="cuda"), num_classes=3)  # dropout draws on the GPU
    assert torch.equal(torch.rand(3, device="cuda"), expected)
