"""MixUp and CutMix of training batches (torchvision `transforms.v2`), the batch half of DeiT's recipe.

A batch of images with hard labels becomes a batch of mixed images with soft targets: MixUp blends two images
and their one-hot labels with λ ~ Beta(α, α) (Zhang et al. 2018); CutMix pastes a box of one image into another,
λ being the area kept (Yun et al. 2019). With both on, each batch takes one of them (`switch_prob`: CutMix's
share), as timm's `Mixup` does; `prob` is the chance that a batch is mixed at all. The loss uses the soft
targets; accuracy is still measured on the hard labels, which the caller keeps.

At small sizes: on 8×8 digits a CutMix box is a few whole pixels (λ is recomputed from the box's area, so the
target stays exact); on 28×28 and 32×32 both behave as on ImageNet.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from lit_vir.checks import ConfigError, check_range

__all__ = ["BatchMixing"]


class BatchMixing:
    """MixUp and/or CutMix on (images, labels) batches → (mixed images, soft targets (B, classes))."""

    def __init__(
        self, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, switch_prob: float = 0.5, prob: float = 1.0
    ) -> None:
        """
        Args:
            mixup_alpha: α of MixUp's Beta(α, α); 0 turns MixUp off (DeiT: 0.8).
            cutmix_alpha: α of CutMix's Beta(α, α); 0 turns CutMix off (DeiT: 1.0).
            switch_prob: with both on, the probability that a batch gets CutMix rather than MixUp (DeiT: 0.5).
            prob: the probability that a batch is mixed at all (DeiT: 1.0).
        """
        owner = type(self).__name__
        check_range(owner, "mixup_alpha", mixup_alpha, low=0)
        check_range(owner, "cutmix_alpha", cutmix_alpha, low=0)
        check_range(owner, "switch_prob", switch_prob, low=0, high=1)
        check_range(owner, "prob", prob, low=0, high=1)
        if mixup_alpha == 0 and cutmix_alpha == 0:
            raise ConfigError(f"{owner}: mixup_alpha and cutmix_alpha are both 0: nothing would be mixed; drop it.")
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.switch_prob = switch_prob
        self.prob = prob

    def transform(self, num_classes: int) -> v2.Transform:
        mixers, weights = [], []
        if self.mixup_alpha > 0:
            mixers.append(v2.MixUp(alpha=self.mixup_alpha, num_classes=num_classes))
            weights.append(1.0 - self.switch_prob if self.cutmix_alpha > 0 else 1.0)
        if self.cutmix_alpha > 0:
            mixers.append(v2.CutMix(alpha=self.cutmix_alpha, num_classes=num_classes))
            weights.append(self.switch_prob if self.mixup_alpha > 0 else 1.0)
        return v2.RandomChoice(mixers, p=weights)

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, num_classes: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) images and (B,) labels → mixed images and (B, classes) targets summing to 1 per row."""
        if torch.rand(()).item() >= self.prob:
            return images, torch.nn.functional.one_hot(labels, num_classes).to(images.dtype)
        return self.transform(num_classes)(images, labels)
