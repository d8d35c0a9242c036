"""The classic echo-state readout, solved in closed form: a ridge regression of the one-hot labels on the
reservoir's features (Jaeger 2001; Lukoševičius 2012, "A practical guide to applying echo state networks").

Features of an image: its tokens and the states of the L reservoirs of a parallel ViR, [x_t ; h¹_t ; … ; hᴸ_t]
(D + L·N per token; spec `vir.md`, "The reservoir"), pooled over the T tokens — `mean` (the default), `last`
(h_T: the state that has read the whole image), or `flatten` (all T concatenated, T times wider). The trained
readouts, residual MLPs and head of the ViR are not used: this is the readout the reservoir literature trains.

One pass over the training set accumulates the normal equations in float64, with a constant column for the
intercept (f the F features of an image, y its one-hot label, C classes):

    A = Σ_n [f_n; 1]·[f_n; 1]ᵀ   (F+1, F+1),        B = Σ_n [f_n; 1]·y_nᵀ   (F+1, C)
    (A + β·diag(1, …, 1, 0))·[W; b] = B,      solved by Cholesky                                         (R)

The ridge β penalises the F weights, not the intercept b: (R) is ridge regression on centred features and
targets with b = ȳ − f̄·W (what reservoirpy's `Ridge(fit_bias=True)` solves). β is relative, β = λ·tr(Σ)/F with
Σ = Σ_n (f_n − f̄)(f_n − f̄)ᵀ, so one grid of λ suits features of any scale (as `lit_vir.analysis.memory`'s ridge).

Memory: A and one copy factorised in place, 2·8·(F+1)² bytes in float64 (`normal_equations_bytes`): 20 MiB at the
reference ViR-1 with mean pooling (F = 1128), 45.5 GiB with flatten pooling (F = 49·1128 = 55,272).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from lit_vir.models.vir import ViR

__all__ = ["FeaturePooling", "NormalEquations", "feature_width", "normal_equations_bytes", "reservoir_features"]

FeaturePooling = Literal["mean", "last", "flatten"]


def feature_width(backbone: ViR, pooling: FeaturePooling) -> int:
    """F, the width of an image's features: (D + L·N), times T with `flatten`. N = 0 without a reservoir."""
    tokens = backbone.embedding.num_patches
    embed_dim = backbone.embedding.projection.out_features
    nodes = sum(bank.num_reservoirs * bank.num_nodes for bank in backbone.reservoirs)  # L·N
    return (embed_dim + nodes) * (tokens if pooling == "flatten" else 1)


def normal_equations_bytes(width: int) -> int:
    """Bytes of the accumulated A (F+1, F+1) and its copy factorised in place, both float64: 16·(F+1)²."""
    return 2 * 8 * (width + 1) ** 2


@torch.no_grad()
def reservoir_features(backbone: ViR, images: torch.Tensor, pooling: FeaturePooling) -> torch.Tensor:
    """[x_t ; h¹_t ; … ; hᴸ_t] of a parallel ViR pooled over the tokens: images (B, C, H, W) → (B, F), float64.

    The states come from the model's own path (`ViR.parallel_states`, which uses the state cache when enabled).
    """
    tokens = backbone.embed(images)  # (B, T, D)
    parts = [tokens]
    if backbone.use_reservoir:
        parts.extend(backbone.parallel_states(images, tokens))  # L × (B, T, N)
    features = torch.cat([part.to(torch.float64) for part in parts], dim=-1)  # (B, T, D + L·N)
    if pooling == "mean":
        return features.mean(dim=1)
    if pooling == "last":
        return features[:, -1]
    return features.flatten(1)  # (B, T·(D + L·N))


class NormalEquations:
    """The sums A and B of (R), accumulated batch by batch in float64, and their solution for a ridge λ."""

    def __init__(self, width: int, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.width = width
        self.gram = torch.zeros(width + 1, width + 1, dtype=torch.float64, device=device)  # A
        self.moments = torch.zeros(width + 1, num_classes, dtype=torch.float64, device=device)  # B

    @property
    def count(self) -> int:
        """n, the samples added so far (A's corner: Σ 1·1)."""
        return int(self.gram[-1, -1].item())

    def add(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: features (B, F) and integer labels (B,)."""
        rows = F.pad(features.to(self.gram), (0, 1), value=1.0)  # (B, F+1): [f; 1]
        self.gram.addmm_(rows.T, rows)
        self.moments.index_add_(1, labels.to(self.gram.device), rows.T)  # column y_n gains [f_n; 1]

    def penalty(self, ridge: float) -> float:
        """β = λ·tr(Σ)/F, Σ the centred scatter matrix of the features: Σ_i (A_ii − s_i²/n), s the feature sums."""
        sums, count = self.gram[: self.width, -1], self.gram[-1, -1]
        scatter = self.gram.diagonal()[: self.width] - sums.square() / count
        return ridge * scatter.sum().item() / self.width

    def solve(self, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
        """W (F, C) and b (C,) of (R) for the relative ridge λ = `ridge` > 0, by one Cholesky factorisation."""
        if self.count == 0:
            raise ValueError("no samples were added to the normal equations: nothing to solve")
        system = self.gram.clone()
        system.diagonal()[: self.width] += self.penalty(ridge)
        info = torch.empty((), dtype=torch.int32, device=system.device)
        torch.linalg.cholesky_ex(system, out=(system, info))  # in place: no third (F+1)² matrix
        if info.item() != 0:
            raise ValueError(
                f"the normal equations are not positive definite at ridge λ = {ridge:g} (features that are constant "
                "or linear combinations of others, with a ridge too small to separate them): use a larger λ"
            )
        solution = torch.cholesky_solve(self.moments, system)  # (F+1, C)
        return solution[: self.width], solution[self.width]
