"""Any timm model as a comparator: `timm.create_model(name, pretrained=False, ...)` behind lit_vir's backbone
signature, so num_classes, image size and channels are linked from the datamodule as for every backbone.

    model:
      init_args:
        backbone:
          class_path: lit_vir.models.TimmModel
          init_args: {name: resnet18}                       # or deit_tiny_patch16_224 with options: {patch_size: 4}

Image size: models that take one (ViT, DeiT, Swin, ...) are built for the dataset's `image_size`; CNNs (ResNet,
ConvNeXt, ...) take any size through their global pooling, but need enough pixels for their strides — ConvNeXt's
stride-4 stem and three stride-2 stages leave nothing of 28×28: `pad_to: 32` zero-pads (in normalised units,
the dataset mean) the images to 32×32 first, as lit_vir's MobileViT does. A size that does not fit is found at
construction with a dry forward, before any data is read. Pretrained weights are off: the comparison is from
scratch (`pretrained: true` downloads from the Hugging Face Hub and needs the internet).
"""

from __future__ import annotations

import difflib
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from lit_vir.checks import ConfigError, check_probabilities, check_range

__all__ = ["TimmModel"]


class TimmModel(nn.Module):
    """A timm model for (B, C, H, W) → (B, classes), from scratch unless `pretrained`."""

    def __init__(
        self,
        num_classes: int = 10,
        image_size: int = 32,
        in_channels: int = 3,
        *,
        name: str = "resnet18",
        pretrained: bool = False,
        pad_to: int | None = None,
        drop_path_rate: float = 0.0,
        options: dict[str, Any] | None = None,
    ) -> None:
        """
        Args:
            name: a `timm.list_models()` name, e.g. resnet18, deit_tiny_patch16_224, convnext_atto.
            pretrained: load timm's pretrained weights (downloads; the comparison is from scratch: false).
            pad_to: zero-pad images (centred) to pad_to × pad_to before the model (≥ image_size).
            drop_path_rate: stochastic depth of the model's residual blocks (timm's own `drop_path_rate`).
            options: further keywords for `timm.create_model`, e.g. {patch_size: 4} for a ViT at 32 px.
        """
        super().__init__()
        owner = type(self).__name__
        if name not in timm.list_models():
            close = difflib.get_close_matches(name, timm.list_models(), n=6, cutoff=0.6)
            raise ConfigError(f"{owner}: name = {name!r} is not a timm model; similar ones: {', '.join(close)}.")
        size = image_size if pad_to is None else pad_to
        check_range(owner, "pad_to", size, low=image_size, hint=f"It must be at least image_size = {image_size}.")
        check_probabilities(owner, drop_path_rate=drop_path_rate)
        self.name = name
        self.pad_to = pad_to
        keywords = dict(pretrained=pretrained, num_classes=num_classes, in_chans=in_channels) | (options or {})
        if drop_path_rate > 0:
            keywords["drop_path_rate"] = drop_path_rate
        self.model = create(name, keywords, size)
        self.check_input_size(in_channels, size)

    def check_input_size(self, in_channels: int, size: int) -> None:
        """A dry forward of one blank image, so a model too deep for the images fails now with a hint."""
        was_training = self.model.training
        try:
            with torch.no_grad():
                self.model.eval()(torch.zeros(1, in_channels, size, size))
        except RuntimeError as error:
            raise ConfigError(
                f"TimmModel: {self.name} cannot take {size}×{size} images ({str(error).splitlines()[0]}). "
                "Its strides need larger inputs: set pad_to (e.g. 32 for ConvNeXt on 28×28 data)."
            ) from error
        finally:
            self.model.train(was_training)

    def no_weight_decay(self) -> set[str]:
        """timm's own exemptions (position embeddings, class tokens, ...), under this wrapper's `model.`."""
        exempt = getattr(self.model, "no_weight_decay", None)
        return {f"model.{name}" for name in exempt()} if callable(exempt) else set()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.pad_to is not None and self.pad_to != images.shape[-1]:
            total = self.pad_to - images.shape[-1]
            images = F.pad(images, (total // 2, total - total // 2, total // 2, total - total // 2))
        return self.model(images)


def create(name: str, keywords: dict[str, Any], size: int) -> nn.Module:
    """`timm.create_model`, with `img_size` for the models that take one (a CNN's constructor refuses it)."""
    try:
        try:
            return timm.create_model(name, img_size=size, **keywords)
        except TypeError as error:
            if "img_size" not in str(error):
                raise
        return timm.create_model(name, **keywords)
    except TypeError as error:
        raise ConfigError(f"TimmModel: timm.create_model({name!r}, ...) refused an option: {error}") from error
    except Exception as error:
        if not keywords.get("pretrained"):
            raise
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        raise ConfigError(
            f"TimmModel: the pretrained weights of {name!r} could not be loaded ({reason}). timm downloads them "
            "from the Hugging Face Hub, which needs the internet; lit_vir's comparisons train from scratch: "
            "set pretrained: false."
        ) from error
