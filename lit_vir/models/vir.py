"""ViR, the Vision Reservoir (Wei et al., arXiv 2112.13545): ViT's pipeline with a reservoir core.

    image → P×P patch tokens x_t → L cores (reservoir → readout → residual MLP) → head

Only the readouts, the residual MLPs and the head train; the reservoirs are fixed buffers and,
as in the reference, the patch embedding receives no gradient unless `train_embedding`.
Deep ViR chains the cores (`serial`) or averages L cores reading the same tokens (`parallel`, the
reference's form). Spec: `vir.md`; shapes use B batch, T tokens, D embedding, N nodes, L cores.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lit_vir.checks import ConfigError, check_choice, check_divides, check_range
from lit_vir.models.reservoir import Reservoir
from lit_vir.models.state_cache import ReservoirStateCache

__all__ = ["ClassifierHead", "PatchEmbedding", "Readout", "ResidualMlp", "ViR"]

Pooling = Literal["flatten", "mean", "last"]
DeepMode = Literal["parallel", "serial"]


class PatchEmbedding(nn.Module):
    """Non-overlapping P×P patches in row-major order, each flattened (P·P·C) and projected to D."""

    def __init__(self, image_size: int, in_channels: int, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.num_patches = (image_size // patch_size) ** 2
        self.projection = nn.Linear(patch_size * patch_size * in_channels, embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = images.shape
        size = self.patch_size
        patches = images.reshape(batch, channels, height // size, size, width // size, size)
        patches = patches.permute(0, 2, 4, 3, 5, 1).reshape(batch, -1, size * size * channels)  # (B, T, P·P·C)
        return self.projection(patches)  # (B, T, D)


class SquareLinear(torch.autograd.Function):
    """F.linear(x², w) that saves x, not x², for backward (x² is recomputed there): with x a core's
    reservoir states (B, T, N), this keeps one fewer (B, T, N) tensor alive per core during training."""

    @staticmethod
    def forward(ctx, inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inputs, weight)
        return F.linear(inputs.square(), weight)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        inputs, weight = ctx.saved_tensors
        grad = grad.to(weight.dtype)  # under autocast the forward product ran in lower precision
        grad_inputs = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_inputs = (2 * inputs * (grad @ weight)).to(inputs.dtype)  # (..., in)
        if ctx.needs_input_grad[1]:
            grad_weight = grad.flatten(0, -2).T @ inputs.square().to(weight.dtype).flatten(0, -2)  # (out, in)
        return grad_inputs, grad_weight


def linear_of_square(inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return SquareLinear.apply(inputs, weight)


class Readout(nn.Module):
    """The trained readout of one core, applied to every token at once (the spec's two equations).

        o_t = tanh(W_o [x_t ; h_t] + b_o)                            (D+N) → D
        y_t = tanh(W_q [x_t ; h_t ; o_t ; x_t² ; h_t² ; o_t²] + b_q)   (4D+2N) → D

    Computed block by block (W_q·[a; b] = W_q,a·a + W_q,b·b) rather than on concatenated features: no
    (B, T, 4D+2N) copy is made, and when x and h need no gradient (a fixed embedding and reservoir)
    backward skips the gradient of the 2D+2N input columns that cannot learn — most of W_q's cost.
    """

    def __init__(self, embed_dim: int, num_nodes: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_nodes = num_nodes
        self.state_readout = nn.Linear(embed_dim + num_nodes, embed_dim)  # W_o
        self.quadratic_readout = nn.Linear(4 * embed_dim + 2 * num_nodes, embed_dim)  # W_q

    def forward(self, tokens: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        states = states.to(tokens.dtype)
        d, n = self.embed_dim, self.num_nodes
        w_o, w_q = self.state_readout.weight, self.quadratic_readout.weight  # (D, D+N), (D, 4D+2N)
        output = torch.tanh(F.linear(tokens, w_o[:, :d], self.state_readout.bias) + F.linear(states, w_o[:, d:]))
        # column blocks of W_q in the order of [x ; h ; o ; x² ; h² ; o²]
        x, h, o, x2, h2, o2 = torch.split(w_q, [d, n, d, d, n, d], dim=1)
        fixed = F.linear(tokens, x) + F.linear(states, h) + linear_of_square(tokens, x2) + linear_of_square(states, h2)
        return torch.tanh(fixed + F.linear(output, o) + linear_of_square(output, o2) + self.quadratic_readout.bias)


class ResidualMlp(nn.Module):
    """The ViR core block: z_t = y_t + MLP(LayerNorm(y_t)), MLP = Linear → GELU → Dropout → Linear → Dropout."""

    def __init__(self, embed_dim: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, embed_dim),
            nn.Dropout(dropout),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens + self.mlp(self.norm(tokens))


class ClassifierHead(nn.Module):
    """Pool the T outputs and classify: `flatten` (T·D → LayerNorm → Linear, the reference), `mean`, `last`."""

    def __init__(self, num_tokens: int, embed_dim: int, num_classes: int, pooling: Pooling = "flatten") -> None:
        super().__init__()
        self.pooling = pooling
        width = num_tokens * embed_dim if pooling == "flatten" else embed_dim
        self.norm = nn.LayerNorm(width)
        self.linear = nn.Linear(width, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T, D)
        if self.pooling == "flatten":
            pooled = tokens.flatten(1)  # (B, T·D)
        elif self.pooling == "mean":
            pooled = tokens.mean(dim=1)  # (B, D)
        else:
            pooled = tokens[:, -1]  # (B, D)
        return self.linear(self.norm(pooled))  # (B, classes)


class ViR(nn.Module):
    """The Vision Reservoir classifier, single (depth 1) or deep (parallel or serial cores).

    Defaults are the reference's CIFAR settings: P 4, D 128, N 1000, M 512, α 0.9, SD 0.05.
    Core i's reservoir is seeded `seed + i`. Serial cores backpropagate through the later
    reservoirs (memory grows with L·B·T·N saved states); `detach` cuts every core's input from the
    graph, as the reference does, so only the last core's readout learns from the loss.
    """

    def __init__(
        self,
        num_classes: int = 10,
        image_size: int = 32,
        in_channels: int = 3,
        *,
        patch_size: int = 4,
        embed_dim: int = 128,
        depth: int = 1,
        mode: DeepMode = "parallel",
        detach: bool = False,
        num_nodes: int = 1000,
        spectral_radius: float = 0.9,
        cycle_weight: float = 0.05,
        jump_weight: float = 0.5,
        background_weight: float = 0.08,
        jump_size: int = 137,
        input_sparsity: float = 0.05,
        input_scaling: float = 1.0,
        signed_input: bool = False,
        leak_rate: float = 1.0,
        bias_scaling: float = 0.0,
        autocast_recurrence: bool = False,
        checkpoint_recurrence: bool = False,
        mlp_dim: int = 512,
        dropout: float = 0.0,
        pooling: Pooling = "flatten",
        train_embedding: bool = False,
        seed: int = 42,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_range(owner, "num_classes", num_classes, low=1)
        check_range(owner, "in_channels", in_channels, low=1)
        check_divides(owner, "patch_size (P)", patch_size, image_size, "image_size")
        check_range(owner, "embed_dim (D)", embed_dim, low=1)
        check_range(owner, "depth (L)", depth, low=1)
        check_choice(owner, "mode", mode, ("parallel", "serial"))
        check_range(owner, "mlp_dim (M)", mlp_dim, low=1)
        check_range(owner, "dropout", dropout, low=0, high=1, high_inclusive=False)
        check_choice(owner, "pooling", pooling, ("flatten", "mean", "last"))

        self.num_classes = num_classes
        self.depth = depth
        self.mode = mode
        self.detach = detach
        self.train_embedding = train_embedding
        self.embedding = PatchEmbedding(image_size, in_channels, patch_size, embed_dim)
        self.image_numel = in_channels * image_size * image_size
        # Frozen rather than detached: a parameter that never gets a gradient would stall DDP.
        self.embedding.requires_grad_(train_embedding)
        reservoir_options = dict(
            num_nodes=num_nodes,
            spectral_radius=spectral_radius,
            cycle_weight=cycle_weight,
            jump_weight=jump_weight,
            background_weight=background_weight,
            jump_size=jump_size,
            input_sparsity=input_sparsity,
            input_scaling=input_scaling,
            signed_input=signed_input,
            leak_rate=leak_rate,
            bias_scaling=bias_scaling,
            autocast_recurrence=autocast_recurrence,
            checkpoint_recurrence=checkpoint_recurrence,
        )
        if mode == "parallel":
            banks = [Reservoir(embed_dim, num_reservoirs=depth, seed=seed, **reservoir_options)]
        else:
            banks = [Reservoir(embed_dim, seed=seed + index, **reservoir_options) for index in range(depth)]
        self.reservoirs = nn.ModuleList(banks)
        self.readouts = nn.ModuleList(Readout(embed_dim, num_nodes) for _ in range(depth))
        self.blocks = nn.ModuleList(ResidualMlp(embed_dim, mlp_dim, dropout) for _ in range(depth))
        self.head = ClassifierHead(self.embedding.num_patches, embed_dim, num_classes, pooling)
        self.state_cache: ReservoirStateCache | None = None

    def enable_state_cache(self, capacity: int, dtype: torch.dtype = torch.float32) -> ReservoirStateCache:
        """Cache the reservoir states of up to `capacity` training images (see `ReservoirStateCache`).

        Only valid when the states depend on the image alone: parallel cores (a serial core's input
        changes as earlier cores learn) and a fixed embedding; the caller also guarantees a fixed
        training transform. Memory: `ReservoirStateCache.bytes_needed`.
        """
        if self.mode != "parallel" or self.train_embedding:
            raise ConfigError(
                "ViR: caching reservoir states needs mode = 'parallel' and train_embedding = false (the states "
                f"must depend on the image alone); got mode = {self.mode!r}, train_embedding = {self.train_embedding}."
            )
        reservoir = self.reservoirs[0]
        shape = (reservoir.num_reservoirs, self.embedding.num_patches, reservoir.num_nodes)
        self.state_cache = ReservoirStateCache(
            capacity, shape, self.image_numel, device=reservoir.weight.device, dtype=dtype
        )
        return self.state_cache

    def parallel_states(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(L, B, T, N) states of the parallel bank, from the cache where it holds them. In training mode,
        states computed for images not yet cached are stored."""
        cache = self.state_cache
        if cache is None:
            return self.reservoirs[0](tokens)
        keys = cache.fingerprint(images)
        rows, found = cache.lookup(keys)
        states = cache.states[rows].to(self.reservoirs[0].weight.dtype)  # (B, L, T, N); misses filled below
        missing = ~found
        if bool(missing.any()):
            computed = self.reservoirs[0](tokens[missing]).transpose(0, 1)  # (B_missing, L, T, N)
            states[missing] = computed
            if self.training:
                cache.insert(keys[missing], computed)
        return states.transpose(0, 1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens (B, T, D); a fixed random projection unless `train_embedding`."""
        return self.embedding(images)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Core outputs z (B, T, D) before the head: averaged (parallel) or from the last core (serial)."""
        tokens = self.embed(images)  # (B, T, D)
        if self.mode == "parallel":
            states = self.parallel_states(images, tokens)  # (L, B, T, N)
            outputs = [
                block(readout(tokens, core_states))
                for readout, block, core_states in zip(self.readouts, self.blocks, states, strict=True)
            ]
            return torch.stack(outputs).mean(dim=0)  # (B, T, D)
        for reservoir, readout, block in zip(self.reservoirs, self.readouts, self.blocks, strict=True):
            core_input = tokens.detach() if self.detach else tokens
            tokens = block(readout(core_input, reservoir(core_input)[0]))  # (B, T, D)
        return tokens

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))
