"""Colour helpers: HSV conversion (skimage's `rgb2hsv` / `hsv2rgb` conventions, hue in [0, 1)), grey
levels, and paint colours that also make sense on 1-channel images.

A 1-channel image is taken as the grey RGB image (x, x, x): a colour operation runs on that and the
result comes back as its luma (ITU-R 601-2: 0.299 R + 0.587 G + 0.114 B, as PIL's and cv2's grey,
which the published snow uses). For brightness this is exactly x + c; saturating a grey image (S = 0)
only has an effect where the published constants add to S (severities 4 and 5), tinting it red (hue 0).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["HUE", "LUMA", "SATURATION", "VALUE", "adjust_hsv", "greyscale", "hsv_to_rgb", "paint", "rgb_to_hsv"]

HUE, SATURATION, VALUE = 0, 1, 2
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2; they sum to 1, so greys keep their level


def rgb_to_hsv(images: Tensor) -> Tensor:
    """(B, 3, H, W) RGB → HSV, all three in [0, 1]; hue and saturation are 0 for greys."""
    red, green, blue = images.unbind(1)
    value = images.amax(dim=1)
    chroma = value - images.amin(dim=1)
    safe_chroma = torch.where(chroma > 0, chroma, 1)  # where chroma = 0 the hue is set to 0 below
    saturation = chroma / torch.where(value > 0, value, 1)
    hue = torch.where(
        value == red,
        (green - blue) / safe_chroma,
        torch.where(value == green, 2 + (blue - red) / safe_chroma, 4 + (red - green) / safe_chroma),
    )
    hue = torch.where(chroma > 0, (hue / 6) % 1, 0)
    return torch.stack([hue, saturation, value], dim=1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """(B, 3, H, W) HSV in [0, 1] → RGB."""
    hue, saturation, value = hsv.unbind(1)
    sector = torch.floor(hue * 6)
    fraction = hue * 6 - sector
    sector = sector.long() % 6
    low = value * (1 - saturation)
    falling = value * (1 - fraction * saturation)
    rising = value * (1 - (1 - fraction) * saturation)

    def by_sector(*choices: Tensor) -> Tensor:
        return torch.stack(choices, dim=1).gather(1, sector[:, None]).squeeze(1)

    red = by_sector(value, falling, low, low, rising, value)
    green = by_sector(rising, value, value, falling, low, low)
    blue = by_sector(low, low, rising, value, value, falling)
    return torch.stack([red, green, blue], dim=1)


def adjust_hsv(images: Tensor, channel: int, change: Callable[[Tensor], Tensor]) -> Tensor:
    """Replace one HSV channel (HUE, SATURATION or VALUE) by `change(channel)`, clipped to [0, 1]."""
    rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    hsv = rgb_to_hsv(rgb)
    hsv[:, channel] = change(hsv[:, channel]).clamp(0, 1)
    changed = hsv_to_rgb(hsv)
    return greyscale(changed) if images.shape[1] == 1 else changed


def greyscale(images: Tensor) -> Tensor:
    """(B, 1, H, W) grey levels: the luma of RGB images, 1-channel images as they are."""
    if images.shape[1] == 1:
        return images
    weights = torch.tensor(LUMA, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def paint(rgb: tuple[float, float, float], like: Tensor) -> Tensor:
    """(1, C, 1, 1): the colour for RGB images, its luma for 1-channel ones."""
    colour = torch.tensor(rgb, device=like.device, dtype=like.dtype).view(1, 3, 1, 1)
    return greyscale(colour) if like.shape[1] == 1 else colour
