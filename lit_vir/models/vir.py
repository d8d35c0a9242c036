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
from torch import nn

from lit_vir.checks import check_choice, check_divides, check_range
from lit_vir.models.reservoir import Reservoir

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


class Readout(nn.Module):
    """The trained readout of one core, applied to every token at once (the spec's two equations).

    o_t = tanh(W_o [x_t ; h_t] + b_o)                            (D+N) → D
    y_t = tanh(W_q [x_t ; h_t ; o_t ; x_t² ; h_t² ; o_t²] + b_q)   (4D+2N) → D
    """

    def __init__(self, embed_dim: int, num_nodes: int) -> None:
        super().__init__()
        self.state_readout = nn.Linear(embed_dim + num_nodes, embed_dim)  # W_o
        self.quadratic_readout = nn.Linear(4 * embed_dim + 2 * num_nodes, embed_dim)  # W_q

    def forward(self, tokens: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        states = states.to(tokens.dtype)
        linear = torch.cat([tokens, states], dim=-1)  # (B, T, D+N)
        output = torch.tanh(self.state_readout(linear))  # (B, T, D)
        features = torch.cat([linear, output], dim=-1)  # (B, T, 2D+N)
        return torch.tanh(self.quadratic_readout(torch.cat([features, features.square()], dim=-1)))


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
        )
        if mode == "parallel":
            banks = [Reservoir(embed_dim, num_reservoirs=depth, seed=seed, **reservoir_options)]
        else:
            banks = [Reservoir(embed_dim, seed=seed + index, **reservoir_options) for index in range(depth)]
        self.reservoirs = nn.ModuleList(banks)
        self.readouts = nn.ModuleList(Readout(embed_dim, num_nodes) for _ in range(depth))
        self.blocks = nn.ModuleList(ResidualMlp(embed_dim, mlp_dim, dropout) for _ in range(depth))
        self.head = ClassifierHead(self.embedding.num_patches, embed_dim, num_classes, pooling)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens (B, T, D); a fixed random projection unless `train_embedding`."""
        return self.embedding(images)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Core outputs z (B, T, D) before the head: averaged (parallel) or from the last core (serial)."""
        tokens = self.embed(images)  # (B, T, D)
        if self.mode == "parallel":
            states = self.reservoirs[0](tokens)  # (L, B, T, N)
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
