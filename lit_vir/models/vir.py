"""ViR, the Vision Reservoir (Wei et al., arXiv 2112.13545): ViT's pipeline with a reservoir core.

    image → P×P patch tokens x_t → L cores (reservoir → readout → residual MLP) → head

Only the readouts, the residual MLPs and the head train; the reservoirs are fixed buffers and,
as in the reference, the patch embedding receives no gradient unless `train_embedding`.
Deep ViR chains the cores (`serial`) or averages L cores reading the same tokens (`parallel`, the
reference's form). Spec: `vir.md`; shapes use B batch, T tokens, D embedding, N nodes, L cores.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from lit_vir.checks import ConfigError, check_choice, check_counts, check_divides, check_probabilities, check_range
from lit_vir.models.reservoir import Reservoir
from lit_vir.models.reservoir_options import ReservoirOptions
from lit_vir.models.state_cache import ReservoirStateCache

__all__ = ["ClassifierHead", "LinearReadout", "PatchEmbedding", "Readout", "ResidualMlp", "ViR"]

Pooling = Literal["flatten", "mean", "last"]
DeepMode = Literal["parallel", "serial"]
ReadoutKind = Literal["quadratic", "linear"]
TokenOrder = Literal["raster", "shuffled"]


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
    With `num_nodes = 0` (the `no_reservoir` ablation) the h columns are absent: o_t = tanh(W_o x_t + b_o),
    y_t = tanh(W_q [x_t ; o_t ; x_t² ; o_t²] + b_q).
    """

    def __init__(self, embed_dim: int, num_nodes: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_nodes = num_nodes
        self.state_readout = nn.Linear(embed_dim + num_nodes, embed_dim)  # W_o
        self.quadratic_readout = nn.Linear(4 * embed_dim + 2 * num_nodes, embed_dim)  # W_q

    def forward(self, tokens: torch.Tensor, states: torch.Tensor | None) -> torch.Tensor:
        d, n = self.embed_dim, self.num_nodes
        w_o, w_q = self.state_readout.weight, self.quadratic_readout.weight  # (D, D+N), (D, 4D+2N)
        # column blocks of W_q in the order of [x ; h ; o ; x² ; h² ; o²]
        x, h, o, x2, h2, o2 = torch.split(w_q, [d, n, d, d, n, d], dim=1)
        output = F.linear(tokens, w_o[:, :d], self.state_readout.bias)  # (B, T, D)
        fixed = F.linear(tokens, x) + linear_of_square(tokens, x2)
        if states is not None:
            states = states.to(tokens.dtype)
            output = output + F.linear(states, w_o[:, d:])
            fixed = fixed + F.linear(states, h) + linear_of_square(states, h2)
        output = torch.tanh(output)
        return torch.tanh(fixed + F.linear(output, o) + linear_of_square(output, o2) + self.quadratic_readout.bias)


class LinearReadout(nn.Module):
    """The `linear_readout` ablation: the classic echo-state readout y_t = W_r [x_t ; h_t] + b_r, (D+N) → D,
    one linear map in place of the two tanh readouts (block by block, as `Readout`)."""

    def __init__(self, embed_dim: int, num_nodes: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_nodes = num_nodes
        self.linear = nn.Linear(embed_dim + num_nodes, embed_dim)  # W_r

    def forward(self, tokens: torch.Tensor, states: torch.Tensor | None) -> torch.Tensor:
        weight = self.linear.weight  # (D, D+N)
        output = F.linear(tokens, weight[:, : self.embed_dim], self.linear.bias)  # (B, T, D)
        if states is not None:
            output = output + F.linear(states.to(tokens.dtype), weight[:, self.embed_dim :])
        return output


class ResidualMlp(nn.Module):
    """The ViR core block: z_t = y_t + DropPath(MLP(LayerNorm(y_t))), MLP = Linear → GELU → Dropout → Linear → Dropout.

    DropPath (stochastic depth, Huang et al. 2016) drops the MLP branch for a whole image with probability
    `drop_path_rate` in training only (`torchvision.ops.StochasticDepth`, mode "row"); 0 is the reference.
    """

    def __init__(self, embed_dim: int, mlp_dim: int, dropout: float = 0.0, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, embed_dim),
            nn.Dropout(dropout),
        )
        self.drop_path = StochasticDepth(drop_path_rate, "row")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens + self.drop_path(self.mlp(self.norm(tokens)))


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

    Defaults are the reference's CIFAR settings: P 4, D 128, M 512 and the reservoir's (N 1000, α 0.9,
    SD 0.05, ...), which are `ReservoirOptions` fields passed as keywords (`ViR(num_nodes=300)`).
    Core i's reservoir is seeded `seed + i`. Serial cores backpropagate through the later
    reservoirs (memory grows with L·B·T·N saved states); `detach` cuts every core's input from the
    graph, as the reference does, so only the last core's readout learns from the loss.

    Ablation controls (what the reservoir adds), each one switch: `use_reservoir = False` (`no_reservoir`:
    no reservoir, the readouts lose their state columns), `memoryless = True` (W = 0, h_t = tanh(u_t)),
    `readout = "linear"` (`linear_readout`: one linear readout of [x_t ; h_t]) and
    `token_order = "shuffled"` (`shuffled_tokens`: one fixed random permutation of the patches, drawn from `seed`).
    """

    def __init__(
        self,
        num_classes: int = 10,
        image_size: int = 32,
        in_channels: int = 3,
        *,
        patch_size: int = 4,  # P: T = (H/P)² tokens, in raster order
        embed_dim: int = 128,  # D: the reservoirs' input width
        depth: int = 1,  # L: reservoir cores
        mode: DeepMode = "parallel",
        detach: bool = False,
        mlp_dim: int = 512,  # M: the residual MLP's hidden width
        dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        pooling: Pooling = "flatten",
        train_embedding: bool = False,
        use_reservoir: bool = True,
        readout: ReadoutKind = "quadratic",
        token_order: TokenOrder = "raster",
        seed: int = 42,
        **reservoir_options: Any,
    ) -> None:
        """
        Args:
            drop_path_rate: stochastic depth of the residual MLPs: every parallel core drops at this rate;
                serial core ℓ of L at ℓ/L of it (Huang et al. 2016's linear rule).
            use_reservoir: false is the `no_reservoir` ablation (the readouts see only the tokens).
            readout: "quadratic" (the spec's two tanh readouts) or "linear" (the `linear_readout` ablation).
            token_order: "raster" (row-major patches) or "shuffled" (the `shuffled_tokens` ablation).
            seed: the reservoirs' seed (core i: seed + i) and the shuffled order's.
            reservoir_options: `ReservoirOptions` fields (num_nodes, spectral_radius, ...).
        """
        super().__init__()
        options = ReservoirOptions(**reservoir_options)
        owner = type(self).__name__
        check_counts(owner, num_classes=num_classes, in_channels=in_channels)
        check_divides(owner, "patch_size (P)", patch_size, image_size, "image_size")
        check_range(owner, "embed_dim (D)", embed_dim, low=1)
        check_range(owner, "depth (L)", depth, low=1)
        check_choice(owner, "mode", mode, ("parallel", "serial"))
        check_range(owner, "mlp_dim (M)", mlp_dim, low=1)
        check_probabilities(owner, dropout=dropout, drop_path_rate=drop_path_rate)
        check_choice(owner, "pooling", pooling, ("flatten", "mean", "last"))
        check_choice(owner, "readout", readout, ("quadratic", "linear"))
        check_choice(owner, "token_order", token_order, ("raster", "shuffled"))

        self.num_classes = num_classes
        self.depth = depth
        self.mode = mode
        self.detach = detach
        self.train_embedding = train_embedding
        self.use_reservoir = use_reservoir
        self.embedding = PatchEmbedding(image_size, in_channels, patch_size, embed_dim)
        self.image_numel = in_channels * image_size * image_size
        # Frozen rather than detached: a parameter that never gets a gradient would stall DDP.
        self.embedding.requires_grad_(train_embedding)
        num_tokens = self.embedding.num_patches
        order = None
        if token_order == "shuffled":
            order = torch.randperm(num_tokens, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("token_order", order)  # (T,) or None
        if not use_reservoir:
            banks = []
        elif mode == "parallel":
            banks = [Reservoir(embed_dim, options, num_reservoirs=depth, seed=seed)]
        else:
            banks = [Reservoir(embed_dim, options, seed=seed + index) for index in range(depth)]
        self.reservoirs = nn.ModuleList(banks)
        state_width = options.num_nodes if use_reservoir else 0
        readout_class = Readout if readout == "quadratic" else LinearReadout
        self.readouts = nn.ModuleList(readout_class(embed_dim, state_width) for _ in range(depth))
        rates = [drop_path_rate * ((index + 1) / depth if mode == "serial" else 1.0) for index in range(depth)]
        self.blocks = nn.ModuleList(ResidualMlp(embed_dim, mlp_dim, dropout, rate) for rate in rates)
        self.head = ClassifierHead(num_tokens, embed_dim, num_classes, pooling)
        self.state_cache: ReservoirStateCache | None = None

    def enable_state_cache(self, capacity: int, dtype: torch.dtype = torch.float32) -> ReservoirStateCache:
        """Cache the reservoir states of up to `capacity` training images (see `ReservoirStateCache`).

        Only valid when the states depend on the image alone: parallel cores (a serial core's input
        changes as earlier cores learn) and a fixed embedding; the caller also guarantees a fixed
        training transform. Memory: `ReservoirStateCache.bytes_needed`.
        """
        if self.mode != "parallel" or self.train_embedding or not self.use_reservoir:
            raise ConfigError(
                "ViR: caching reservoir states needs mode = 'parallel', train_embedding = false (the states must "
                "depend on the image alone) and a reservoir (use_reservoir = true); got "
                f"mode = {self.mode!r}, train_embedding = {self.train_embedding}, use_reservoir = {self.use_reservoir}."
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
        """Patch tokens (B, T, D), in `token_order`; a fixed random projection unless `train_embedding`."""
        tokens = self.embedding(images)  # (B, T, D)
        return tokens if self.token_order is None else tokens[:, self.token_order]

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Core outputs z (B, T, D) before the head: averaged (parallel) or from the last core (serial)."""
        tokens = self.embed(images)  # (B, T, D)
        if self.mode == "parallel":
            states = self.parallel_states(images, tokens) if self.use_reservoir else [None] * self.depth  # (L, B, T, N)
            outputs = [
                block(readout(tokens, core_states))
                for readout, block, core_states in zip(self.readouts, self.blocks, states, strict=True)
            ]
            return torch.stack(outputs).mean(dim=0)  # (B, T, D)
        for index, (readout, block) in enumerate(zip(self.readouts, self.blocks, strict=True)):
            core_input = tokens.detach() if self.detach else tokens
            states = self.reservoirs[index](core_input)[0] if self.use_reservoir else None  # (B, T, N)
            tokens = block(readout(core_input, states))  # (B, T, D)
        return tokens

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))
