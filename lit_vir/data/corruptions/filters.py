"""Spatial filters shared by the corruptions: Gaussian blur, the anti-aliased disk, ImageMagick's motion
blur, centre zoom and PIL's box resampling — each batched over (B, C, H, W) and device-agnostic."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

__all__ = [
    "box_resize",
    "box_resize_matrix",
    "convolve",
    "disk_kernel",
    "gather_pixels",
    "gaussian_filter",
    "motion_blur",
    "resample",
    "shift",
    "zoom",
    "zoom_matrix",
]


def gaussian_filter(images: Tensor, sigma: float, truncate: float = 4.0) -> Tensor:
    """Gaussian blur with standard deviation `sigma` pixels and kernel radius ⌈truncate·σ⌉ (scipy's and
    skimage's default truncation), through torchvision (reflected edges); σ = 0 is the identity.
    The radius stops one pixel short of the side, the most reflection padding allows."""
    if sigma <= 0:
        return images
    radius = min(math.ceil(truncate * sigma), min(images.shape[-2:]) - 1)
    return TF.gaussian_blur(images, kernel_size=[2 * radius + 1] * 2, sigma=[sigma, sigma])


def disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """The published `disk`: the pixels within `radius` of the centre, normalised to sum 1, anti-aliased
    by a 3×3 Gaussian blur with σ = alias_blur (cv2.GaussianBlur, ksize 3). The grid ends one pixel past
    the disk; the published 17×17 grid holds only zeros beyond that. Returns (k, k), k odd."""
    reach = math.ceil(radius) + 1
    offsets = torch.arange(-reach, reach + 1, dtype=torch.float64)
    disk = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).double()
    disk /= disk.sum()
    taps = torch.exp(-(torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64) ** 2) / (2 * alias_blur**2))
    taps /= taps.sum()
    return F.conv2d(disk[None, None], (taps[:, None] * taps[None, :])[None, None], padding=1)[0, 0]


def convolve(images: Tensor, kernel: Tensor) -> Tensor:
    """Every channel filtered with one (k, k) kernel, edges reflected without repeating the edge pixel
    (cv2.filter2D's default border); edges are repeated where the image is too small to reflect."""
    batch, channels, height, width = images.shape
    reach = kernel.shape[-1] // 2
    mode = "reflect" if reach < min(height, width) else "replicate"
    planes = F.pad(images.reshape(batch * channels, 1, height, width), [reach] * 4, mode=mode)
    return F.conv2d(planes, kernel.to(images)[None, None]).reshape(batch, channels, height, width)


def gather_pixels(images: Tensor, rows: Tensor, columns: Tensor) -> Tensor:
    """Output pixel (y, x) of image b is input pixel (rows[b, y, x], columns[b, y, x]); the index tensors
    broadcast to (B, H, W). One gather over the flattened planes."""
    source = (rows * images.shape[-1] + columns).flatten(1)  # (B, H·W)
    planes = images.flatten(2)  # (B, C, H·W)
    return planes.gather(2, source[:, None, :].expand_as(planes)).view_as(images)


def shift(images: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
    """Output pixel (y, x) of image b reads input pixel (y + dy[b], x + dx[b]), edge pixels repeated."""
    height, width = images.shape[-2:]
    rows = (torch.arange(height, device=images.device) + dy[:, None]).clamp(0, height - 1)  # (B, H)
    columns = (torch.arange(width, device=images.device) + dx[:, None]).clamp(0, width - 1)  # (B, W)
    return gather_pixels(images, rows[:, :, None], columns[:, None, :])


def motion_blur(images: Tensor, radius: float, sigma: float, angles: Tensor) -> Tensor:
    """ImageMagick's MotionBlurImage, which the published script calls through Wand: a one-sided streak
    of 2⌈R⌉ + 1 taps, tap i weighted exp(−i²/2σ²) (normalised) and placed ⌈i·(cos θ, sin θ) − ½⌉ pixels
    away, edges repeated. `angles` (B,) in degrees, one per image."""
    taps = torch.arange(2 * math.ceil(radius) + 1, device=images.device, dtype=images.dtype)
    weights = torch.exp(-(taps**2) / (2 * sigma**2))
    weights /= weights.sum()
    radians = torch.deg2rad(angles.to(images.dtype))
    dx = torch.ceil(taps[None, :] * torch.cos(radians)[:, None] - 0.5).long()  # (B, taps)
    dy = torch.ceil(taps[None, :] * torch.sin(radians)[:, None] - 0.5).long()
    blurred = torch.zeros_like(images)
    for tap, weight in enumerate(weights):
        blurred += weight * shift(images, dx[:, tap], dy[:, tap])
    return blurred


def zoom(images: Tensor, factor: float) -> Tensor:
    """Magnify about the centre by `factor` ≥ 1, bilinear, keeping the size (the published `clipped_zoom`,
    which crops ⌈side/factor⌉ pixels and resizes them with scipy; sub-pixel alignment differs)."""
    rows = zoom_matrix(images.shape[-2], factor, images)
    columns = zoom_matrix(images.shape[-1], factor, images)
    return resample(images, rows, columns)


def zoom_matrix(size: int, factor: float, like: Tensor) -> Tensor:
    """(size, size) bilinear interpolation matrix of a magnification about the centre along one axis:
    output pixel i reads the source position (i − c)/factor + c, c = (size − 1)/2, clamped to the edges
    (grid_sample's bilinear sampling with border padding, as a matrix)."""
    centre = (size - 1) / 2
    source = ((torch.arange(size, dtype=torch.float64) - centre) / factor + centre).clamp(0, size - 1)
    lower = source.floor().long()
    upper = (lower + 1).clamp(max=size - 1)
    fraction = source - lower
    outputs = torch.arange(size)
    matrix = torch.zeros(size, size, dtype=torch.float64)
    matrix.index_put_((outputs, lower), 1 - fraction, accumulate=True)
    matrix.index_put_((outputs, upper), fraction, accumulate=True)
    return matrix.to(like.device, like.dtype)


def resample(images: Tensor, rows: Tensor, columns: Tensor) -> Tensor:
    """Separable linear resampling, `rows` @ image @ `columns`ᵀ per channel: (B, C, H, W) with rows
    (H', H) and columns (W', W) → (B, C, H', W'). Two plain matrix products, much faster than grid_sample."""
    resized = images @ columns.T  # (B, C, H, W')
    return (resized.transpose(-1, -2) @ rows.T).transpose(-1, -2)


def box_resize_matrix(size_in: int, size_out: int, like: Tensor) -> Tensor:
    """PIL's BOX resampling along one axis as a (size_out, size_in) matrix: output pixel i averages the
    input pixels whose centres lie in its footprint (half-open, as PIL's box filter); when enlarging, the
    footprint is one input pixel wide, i.e. nearest neighbour."""
    scale = size_in / size_out
    footprint = max(scale, 1.0)
    centres = (torch.arange(size_out, dtype=torch.float64) + 0.5) * scale
    distance = (torch.arange(size_in, dtype=torch.float64)[None, :] + 0.5 - centres[:, None]) / footprint
    weights = ((distance > -0.5) & (distance <= 0.5)).double()
    return (weights / weights.sum(dim=1, keepdim=True)).to(like.device, like.dtype)


def box_resize(images: Tensor, height: int, width: int) -> Tensor:
    """Resize to (height, width) with PIL's BOX filter (`Image.resize(..., Image.BOX)`), separably."""
    rows = box_resize_matrix(images.shape[-2], height, images)  # (height, H)
    columns = box_resize_matrix(images.shape[-1], width, images)  # (width, W)
    return resample(images, rows, columns)
