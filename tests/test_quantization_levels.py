"""Every matrix product of a W_b A_b model takes inputs with at most 2^b levels per quantisation group.

Checked from outside the quantisation code: a TorchFunctionMode sees every product torch computes (F.linear,
conv2d, matmul / @ / bmm, baddbmm, and any scaled_dot_product_attention or einsum, which would be a float
product) and records its inputs; the test then counts the distinct values of each input per group — a weight
per output channel; an activation per tensor, except ViR's readout inputs, concatenated from sources that
each have their own grid ([x ; h] and [x ; h ; o ; x² ; h² ; o²], split here from the spec's widths D, N).
ViR's reservoir products (its fixed W and V, which stay float by design) are recognised by their buffers
and left out; every other product must be quantised, and the count of products is checked so that none
can pass unseen.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from lit_vir.models import ReViT, ViR, VisionTransformer
from lit_vir.models.vir import Readout
from lit_vir.quantization import Recipe, calibrated_copy, set_precision

# func → positions of its two matrix operands
PRODUCTS = {
    F.linear: (0, 1),
    F.conv2d: (0, 1),
    torch.matmul: (0, 1),
    torch.Tensor.matmul: (0, 1),
    torch.Tensor.__matmul__: (0, 1),
    torch.bmm: (0, 1),
    torch.Tensor.bmm: (0, 1),
    torch.baddbmm: (1, 2),
    torch.Tensor.baddbmm_: (1, 2),
    torch.addmm: (1, 2),
}
FLOAT_ONLY = {F.scaled_dot_product_attention, torch.einsum}


@dataclass
class Product:
    func: str
    left: torch.Tensor
    right: torch.Tensor


class ProductRecorder(TorchFunctionMode):
    """Records the two operands of every matrix product, and fails on products it cannot see into."""

    def __init__(self, fixed: list[torch.Tensor]) -> None:
        super().__init__()
        self.fixed = fixed  # buffers whose products stay float (reservoirs)
        self.products: list[Product] = []
        self.unseen: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FLOAT_ONLY:
            self.unseen.append(func.__name__)
        elif func in PRODUCTS:
            left, right = (args[index] for index in PRODUCTS[func])
            if not any(operand is buffer for operand in (left, right) for buffer in self.fixed):
                self.products.append(Product(func.__name__, left.detach().clone(), right.detach().clone()))
        return func(*args, **kwargs)


def levels(tensor: torch.Tensor) -> int:
    return int(torch.unique(tensor).numel())


def weight_levels(weight: torch.Tensor) -> int:
    """The most distinct values in one output channel."""
    return max(levels(row) for row in weight.flatten(1))


def record(model: nn.Module, images: torch.Tensor) -> ProductRecorder:
    fixed = [buffer for name, buffer in model.named_buffers() if name.startswith("reservoirs.")]
    recorder = ProductRecorder(fixed)
    with torch.no_grad(), recorder:
        model(images)
    assert recorder.unseen == [], f"float products computed: {recorder.unseen}"
    return recorder


def images(count: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def tiny_vit(cls: type = VisionTransformer) -> nn.Module:
    torch.manual_seed(0)
    return cls(num_classes=10, image_size=28, in_channels=1, patch_size=7, embed_dim=16, depth=2, num_heads=2).eval()


DIM, NODES = 16, 24


def tiny_vir(**options) -> ViR:
    torch.manual_seed(0)
    return ViR(
        num_classes=10,
        image_size=28,
        in_channels=1,
        patch_size=7,
        num_nodes=NODES,
        jump_size=5,
        embed_dim=DIM,
        mlp_dim=32,
        **options,
    ).eval()


def activation_groups(product: Product, nodes: int) -> list[torch.Tensor]:
    """The per-tensor groups of a product's left input: ViR's readouts by source, else the whole tensor."""
    width = product.left.shape[-1]
    if product.func == "linear" and width == DIM + nodes and product.right.shape[0] == DIM:
        widths = [DIM, nodes]
    elif product.func == "linear" and width == 4 * DIM + 2 * nodes:
        widths = [DIM, nodes, DIM, DIM, nodes, DIM]
    else:
        return [product.left]
    return [piece for piece in product.left.split(widths, dim=-1) if piece.numel()]


def is_edge(product: Product) -> bool:
    """The patch embedding (a convolution, or ViR's projection of P·P pixels) or the head (10 classes)."""
    weight = product.right
    return product.func == "conv2d" or weight.shape[0] == 10 or (product.func == "linear" and weight.shape[1] == 49)


def assert_levels(recorder: ProductRecorder, bits: int, edge_bits: int, nodes: int = NODES) -> None:
    for index, product in enumerate(recorder.products):
        allowed = 2 ** (edge_bits if is_edge(product) else bits)
        where = f"product {index} ({product.func}, {tuple(product.left.shape)} × {tuple(product.right.shape)})"
        if product.func in ("linear", "conv2d"):
            assert weight_levels(product.right) <= allowed, where
            assert max(levels(group) for group in activation_groups(product, nodes)) <= allowed, where
        else:  # a product of two activations
            assert levels(product.left) <= allowed and levels(product.right) <= allowed, where


def counts(recorder: ProductRecorder) -> dict[str, int]:
    found: dict[str, int] = {}
    for product in recorder.products:
        kind = product.func if product.func in ("linear", "conv2d") else "matmul"
        found[kind] = found.get(kind, 0) + 1
    return found


@pytest.mark.parametrize("cls", [VisionTransformer, ReViT])
@pytest.mark.parametrize(("bits", "search_edges"), [(3, True), (4, False)])
def test_every_vit_product_takes_at_most_2_to_the_b_levels(cls, bits, search_edges):
    model = tiny_vit(cls)
    quantized = calibrated_copy(model, images(), Recipe(search_edges=search_edges))
    set_precision(quantized, bits)
    recorder = record(quantized, images(8, seed=1))
    # per block qkv, proj, fc1, fc2 and the two attention products; the head; the patch embedding
    assert counts(recorder) == {"conv2d": 1, "linear": 2 * 4 + 1, "matmul": 2 * 2}
    assert_levels(recorder, bits, bits if search_edges else 8)


@pytest.mark.parametrize(("bits", "search_edges"), [(3, True), (4, False)])
def test_every_trainable_vir_product_takes_at_most_2_to_the_b_levels(bits, search_edges):
    quantized = calibrated_copy(tiny_vir(), images(), Recipe(search_edges=search_edges))
    set_precision(quantized, bits)
    recorder = record(quantized, images(8, seed=1))
    # the embedding, the two readouts, the residual MLP's two Linears, the head (reservoir products left out)
    assert counts(recorder) == {"linear": 6}
    assert_levels(recorder, bits, bits if search_edges else 8)
    # each source of a readout input has a grid of its own: it uses most of its 2^b levels, which one grid
    # stretched over sources of different ranges (x², h² ≥ 0 next to signed x, h) would not
    readouts = [groups for product in recorder.products if len(groups := activation_groups(product, NODES)) > 1]
    assert len(readouts) == 2 and all(levels(group) > 2 ** (bits - 1) for groups in readouts for group in groups)


class TokensOnlyReadout(nn.Module):
    """A readout without reservoir nodes (N = 0), as ViR's no-reservoir ablation builds it."""

    def __init__(self) -> None:
        super().__init__()
        self.readout = Readout(DIM, 0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.readout(tokens, tokens[..., :0])


def test_a_readout_without_reservoir_nodes_is_quantized():
    torch.manual_seed(0)
    model = TokensOnlyReadout().eval()
    tokens = torch.randn(16, 5, DIM)
    quantized = calibrated_copy(model, tokens, Recipe(sq_b=False))
    torch.testing.assert_close(quantized(tokens), model(tokens), atol=1e-6, rtol=0)  # float until widths are set
    set_precision(quantized, 3)
    recorder = record(quantized, tokens)
    assert counts(recorder) == {"linear": 2}
    assert_levels(recorder, 3, 3, nodes=0)


def test_the_no_reservoir_ablation_is_quantized():
    """ViR with use_reservoir=False (configs/ablation/no_reservoir.yaml) hands its readouts no states at all (None,
    not an empty tensor): the quantised model computes the float one before widths are set, and at 3 bits every
    product but the edges, the readouts' included, has at most 2³ levels per group."""
    model = tiny_vir(use_reservoir=False)
    pictures = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    quantized = calibrated_copy(model, pictures, Recipe(sq_b=False))
    torch.testing.assert_close(quantized(pictures), model(pictures), atol=1e-5, rtol=0)
    set_precision(quantized, 3)
    recorder = record(quantized, pictures)
    assert counts(recorder)["linear"] >= 2
    assert_levels(recorder, 3, 8, nodes=0)  # the patch embedding and head stay at W8A8 by default


def test_the_recorder_sees_a_float_model_as_unquantized():
    """The check itself can fail: the float ViT computes its attention with SDPA, unseen as products, and its
    other products have far more than 2^8 levels."""
    recorder = ProductRecorder([])
    with torch.no_grad(), recorder:
        tiny_vit()(images(8))
    assert recorder.unseen == ["scaled_dot_product_attention"] * 2
    with pytest.raises(AssertionError):
        assert_levels(recorder, 8, 8)
