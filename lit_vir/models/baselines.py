"""Baselines that need no story: a linear classifier and an MLP on the pixels, and a small CNN.

What ViR and the ViTs are measured against should include what any reader would try first. On MNIST-like data a
linear classifier on pixels is the floor (multinomial logistic regression, ≈ 84% on Fashion-MNIST); an MLP and a
two-block CNN are the classic next steps (LeCun et al. 1998's table; Keras' MNIST examples). All three take the
backbone signature (num_classes, image_size, in_channels linked from the datamodule) and split
`forward_features` / `forward_head` like every lit_vir model.
"""

from __future__ import annotations

import itertools

from torch import Tensor, nn

from lit_vir.checks import check_counts, check_probabilities

__all__ = ["PixelLinear", "PixelMLP", "SmallCNN"]


class PixelLinear(nn.Module):
    """logits = W·vec(x) + b over the normalised pixels: multinomial logistic regression."""

    def __init__(self, num_classes: int = 10, image_size: int = 28, in_channels: int = 1, *, bias: bool = True) -> None:
        """
        Args:
            bias: learn the per-class offset b.
        """
        super().__init__()
        check_counts(type(self).__name__, num_classes=num_classes, image_size=image_size, in_channels=in_channels)
        self.head = nn.Linear(in_channels * image_size * image_size, num_classes, bias=bias)

    def forward_features(self, images: Tensor) -> Tensor:
        return images.flatten(1)  # (B, C·H·W)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.head(features)  # (B, classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(images))


class PixelMLP(nn.Module):
    """Fully connected layers with ReLU (and dropout) on the flattened pixels, then a linear head."""

    def __init__(
        self,
        num_classes: int = 10,
        image_size: int = 28,
        in_channels: int = 1,
        *,
        hidden: tuple[int, ...] = (512, 256),
        dropout: float = 0.0,
    ) -> None:
        """
        Args:
            hidden: the widths of the hidden layers, in order.
            dropout: dropout after each hidden layer's ReLU.
        """
        super().__init__()
        owner = type(self).__name__
        check_counts(owner, num_classes=num_classes, image_size=image_size, in_channels=in_channels)
        check_counts(owner, **{f"hidden[{index}]": width for index, width in enumerate(hidden)})
        check_probabilities(owner, dropout=dropout)
        widths = [in_channels * image_size * image_size, *hidden]
        layers: list[nn.Module] = []
        for width_in, width_out in itertools.pairwise(widths):
            layers += [nn.Linear(width_in, width_out), nn.ReLU(), nn.Dropout(dropout)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], num_classes)

    def forward_features(self, images: Tensor) -> Tensor:
        return self.body(images.flatten(1))  # (B, hidden[-1])

    def forward_head(self, features: Tensor) -> Tensor:
        return self.head(features)  # (B, classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(images))


class SmallCNN(nn.Module):
    """Two blocks of 3×3 convolution (padding 1) + ReLU + 2×2 max pooling, then a hidden layer and the head:
    the classic small MNIST CNN (about 0.4M parameters at 28×28)."""

    def __init__(
        self,
        num_classes: int = 10,
        image_size: int = 28,
        in_channels: int = 1,
        *,
        channels: tuple[int, int] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.0,
    ) -> None:
        """
        Args:
            channels: the two convolutions' output channels.
            hidden: the width of the fully connected layer before the head.
            dropout: dropout before the head.
        """
        super().__init__()
        owner = type(self).__name__
        check_counts(owner, num_classes=num_classes, in_channels=in_channels, hidden=hidden)
        check_counts(owner, image_size=image_size // 4, **{f"channels[{i}]": width for i, width in enumerate(channels)})
        check_probabilities(owner, dropout=dropout)
        first, second = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, first, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, c1, H/2, W/2)
            nn.Conv2d(first, second, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, c2, H/4, W/4)
        )
        side = image_size // 4
        self.hidden = nn.Sequential(nn.Linear(second * side * side, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(hidden, num_classes)

    def forward_features(self, images: Tensor) -> Tensor:
        return self.hidden(self.features(images).flatten(1))  # (B, hidden)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.head(features)  # (B, classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(images))
