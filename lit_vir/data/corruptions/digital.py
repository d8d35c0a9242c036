"""Digital: contrast, elastic_transform, pixelate, jpeg_compression (benchmark) and saturate (extra),
after the published recipe (Hendrycks & Dietterich 2019, `make_cifar_c.py`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.io import decode_jpeg, encode_jpeg

from lit_vir.data.corruptions import filters
from lit_vir.data.corruptions.colour import SATURATION, adjust_hsv
from lit_vir.data.corruptions.contract import at_severity, corruption
from lit_vir.data.corruptions.sampling import uniform

__all__ = ["contrast", "elastic_transform", "jpeg_compression", "pixelate", "saturate"]

CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)  # c
# (displacement scale k, field smoothness σ, affine corner jitter a), as fractions of the side (published: 32·…)
ELASTIC = ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))
ELASTIC_TRUNCATE = 3.0  # the published Gaussian of the displacement field stops at 3σ
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)  # f, the side of the small image relative to the original
JPEG_QUALITY = (80, 65, 58, 50, 40)  # q
SATURATE = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))  # (a, b): S ← S·a + b


@corruption
def contrast(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """(x − mean)·c + mean, with the mean per image and channel."""
    factor = at_severity(CONTRAST, severity)
    means = images.mean(dim=(2, 3), keepdim=True)
    return (images - means) * factor + means


@corruption
def elastic_transform(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """A random affine warp (three control points jittered by ±a), then a smooth random displacement
    field (uniform noise blurred with σ, times k), bilinear with reflected edges. The published constants
    are 32·(k, σ, a); here side·(k, σ, a). Deviation: the two warps are composed and the image is
    resampled once (published: cv2.warpAffine, then scipy's map_coordinates), which blurs a little less.
    """
    displacement_scale, smoothness, jitter = (
        min(images.shape[-2:]) * value for value in at_severity(ELASTIC, severity)
    )
    batch, _, height, width = images.shape
    to_source = random_affine_inverse(images, jitter, generator)  # (B, 3, 2)
    field = uniform((batch, 2, height, width), generator, images, -1.0, 1.0)
    field = filters.gaussian_filter(field, smoothness, truncate=ELASTIC_TRUNCATE) * displacement_scale
    rows, columns = torch.meshgrid(
        torch.arange(height, device=images.device, dtype=images.dtype),
        torch.arange(width, device=images.device, dtype=images.dtype),
        indexing="ij",
    )
    displaced = torch.stack([columns + field[:, 0], rows + field[:, 1]], dim=-1)  # (B, H, W, 2) as (x, y)
    source = torch.cat([displaced, torch.ones_like(displaced[..., :1])], dim=-1).flatten(1, 2) @ to_source
    return sample_pixels(images, source.view(batch, height, width, 2))


def random_affine_inverse(images: Tensor, jitter: float, generator: torch.Generator) -> Tensor:
    """(B, 3, 2) maps [x, y, 1] of the warped image back to its source, for the published random affine:
    three points around the centre (±side//3) each moved by U(−jitter, jitter) in x and y."""
    batch, _, height, width = images.shape
    centre_x, centre_y, reach = width // 2, height // 2, min(height, width) // 3
    points = torch.tensor(
        [
            [centre_x + reach, centre_y + reach],
            [centre_x + reach, centre_y - reach],
            [centre_x - reach, centre_y - reach],
        ],
        device=images.device,
        dtype=torch.float64,
    )
    moved = points + uniform((batch, 3, 2), generator, points, -jitter, jitter)  # (B, 3, 2)
    moved = torch.cat([moved, torch.ones_like(moved[..., :1])], dim=-1)  # (B, 3, 3)
    return torch.linalg.solve(moved, points.expand(batch, 3, 2)).to(images.dtype)


def sample_pixels(images: Tensor, source: Tensor) -> Tensor:
    """Bilinear samples of `images` at pixel coordinates `source` (B, H, W, 2) as (x, y), reflected edges."""
    height, width = images.shape[-2:]
    scale = torch.tensor([2 / max(width - 1, 1), 2 / max(height - 1, 1)], device=images.device, dtype=images.dtype)
    grid = source * scale - 1
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=True)


@corruption
def pixelate(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Box-downsample to ⌊side·f⌋ and box-upsample back (PIL's BOX filter, as published)."""
    factor = at_severity(PIXELATE, severity)
    height, width = images.shape[-2:]
    small = filters.box_resize(images, int(height * factor), int(width * factor))
    return filters.box_resize(small, height, width)


@corruption
def jpeg_compression(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """A JPEG round trip at quality q through torchvision.io (libjpeg, as PIL in the published script;
    4:2:0 chroma subsampling in both), on the CPU; images are rounded to uint8 first."""
    quality = at_severity(JPEG_QUALITY, severity)
    pixels = (images * 255).round().to(torch.uint8).cpu()
    decoded = decode_jpeg(encode_jpeg(list(pixels), quality=quality))
    return torch.stack(decoded).to(images.device, images.dtype) / 255


@corruption
def saturate(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """S ← S·a + b in HSV: severities 1–2 wash colours out, 3–5 oversaturate. On 1-channel images (see
    `colour.adjust_hsv`) only b > 0 (severities 4–5) has an effect."""
    factor, offset = at_severity(SATURATE, severity)
    return adjust_hsv(images, SATURATION, lambda saturation: saturation * factor + offset)
