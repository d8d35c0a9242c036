"""Weather: snow, frost, fog, brightness (benchmark) and spatter (extra), after the published recipe
(Hendrycks & Dietterich 2019, `make_cifar_c.py`). Lengths in pixels scale with the image side
(`pixel_scale`). Deviations: frost uses a procedural texture instead of photographs, and spatter's water
shading is approximated (see each docstring)."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_vir.data.corruptions import filters
from lit_vir.data.corruptions.colour import VALUE, adjust_hsv, greyscale, paint
from lit_vir.data.corruptions.contract import at_severity, corruption, pixel_scale
from lit_vir.data.corruptions.sampling import normal, uniform
from lit_vir.data.corruptions.textures import frost_texture, next_power_of_two, plasma_fractal

__all__ = ["brightness", "fog", "frost", "snow", "spatter"]

# (mean μ, std σ, zoom z, threshold t, blur radius R, blur sigma S, image weight w)
SNOW = (
    (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
SNOW_ANGLES = (-135.0, -45.0)  # degrees: the flakes fall roughly downwards
FROST = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))  # (image weight a, frost weight b)
FROST_TINT = (0.85, 0.93, 1.0)  # pale ice blue, the colour of the published frost photographs
FOG = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))  # (fog weight a, fractal decay d)
BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)  # c, added to V
# (mean μ, std σ, blur σ_b, threshold t, water intensity or mud blur, mud?) — the published table
SPATTER = (
    (0.62, 0.1, 0.7, 0.7, 0.5, False),
    (0.65, 0.1, 0.8, 0.7, 0.5, False),
    (0.65, 0.3, 1, 0.69, 0.5, False),
    (0.65, 0.1, 0.7, 0.69, 0.6, True),
    (0.65, 0.1, 0.5, 0.68, 0.6, True),
)
WATER_RGB = (175 / 255, 238 / 255, 238 / 255)  # pale turquoise
MUD_RGB = (63 / 255, 42 / 255, 20 / 255)  # mud brown
MUD_OPAQUE = 0.8  # blurred mud coverage below this is dropped
EMBOSS = ((-2.0, -1.0, 0.0), (-1.0, 1.0, 1.0), (0.0, 1.0, 2.0))  # the published water-shading kernel
WATER_DEPTH_BLUR = 1.0  # σ in pixels at side 32 of the blurred puddle mask that stands in for the edge distance


@corruption
def snow(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """A snow layer N(μ, σ) per pixel, zoomed by z, values below t dropped, streaked by motion blur
    (R, S, angle in [−135°, −45°]); the scene whitened (w·x + (1 − w)·max(x, 1.5·grey + 0.5)) and the
    layer added twice, once rotated by 180°. Deviation: the layer is not rounded to uint8 (the published
    script passes it through a PNG)."""
    mean, std, factor, threshold, radius, sigma, weight = at_severity(SNOW, severity)
    scale = pixel_scale(images)
    batch, _, height, width = images.shape
    flakes = filters.zoom(normal((batch, 1, height, width), generator, images, mean, std), factor)
    flakes = torch.where(flakes < threshold, 0, flakes).clamp(0, 1)
    angles = uniform((batch,), generator, images, *SNOW_ANGLES)
    flakes = filters.motion_blur(flakes, radius * scale, sigma * scale, angles)  # (B, 1, H, W)
    whitened = torch.maximum(images, greyscale(images) * 1.5 + 0.5)
    scene = weight * images + (1 - weight) * whitened
    return scene + flakes + flakes.flip(-2, -1)


@corruption
def frost(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """a·x + b·frost. Deviation: the published frost crops one of six photographs of frost; here the
    frost is procedural (`textures.frost_texture`: rough plasma rime plus motion-blurred ice needles),
    tinted pale ice blue on RGB images. Report frost numbers with this caveat."""
    image_weight, frost_weight = at_severity(FROST, severity)
    batch, _, height, width = images.shape
    texture = frost_texture(batch, height, width, generator, images) * paint(FROST_TINT, images)
    return image_weight * images + frost_weight * texture


@corruption
def fog(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """x + a·plasma fractal (decay d), rescaled by max/(max + a) with max the image's brightest value. The
    fractal is drawn at the next power of two of the side and cropped, as the published 32 → 32 (28 → 32)."""
    weight, decay = at_severity(FOG, severity)
    batch, _, height, width = images.shape
    side = next_power_of_two(max(height, width))
    haze = plasma_fractal(batch, side, decay, generator, images)[..., :height, :width]  # (B, 1, H, W)
    brightest = images.amax(dim=(1, 2, 3), keepdim=True)
    return (images + weight * haze) * brightest / (brightest + weight)


@corruption
def brightness(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """V ← V + c in HSV (1-channel images: x + c)."""
    shift = at_severity(BRIGHTNESS, severity)
    return adjust_hsv(images, VALUE, lambda value: value + shift)


@corruption
def spatter(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Liquid splashes: a layer N(μ, σ), blurred with σ_b, values below t dropped; severities 1–3 splash
    water (`water_splash`), 4–5 mud (`mud_splash`), as published."""
    mean, std, blur, threshold, strength, is_mud = at_severity(SPATTER, severity)
    scale = pixel_scale(images)
    batch, _, height, width = images.shape
    liquid = filters.gaussian_filter(normal((batch, 1, height, width), generator, images, mean, std), blur * scale)
    liquid = torch.where(liquid < threshold, 0, liquid)  # (B, 1, H, W)
    if is_mud:
        return mud_splash(images, liquid > threshold, strength * scale)
    return water_splash(images, liquid, strength, scale)


def water_splash(images: Tensor, liquid: Tensor, intensity: float, scale: float) -> Tensor:
    """x + m·pale turquoise, m the shaded puddles scaled to peak at `intensity`.

    Deviation: the published shading is the distance to the puddles' Canny edges (truncated at 20 px,
    3×3 box blur, histogram-equalised), embossed, 3×3 box blur, times the layer. Here the distance is
    approximated by the puddle mask blurred with a Gaussian (σ = 1 px at side 32), which also rises from
    the edges inwards; the published emboss kernel and final box blur follow, the negative part dropped
    as cv2's 8-bit result does.
    """
    depth = filters.gaussian_filter((liquid > 0).to(images.dtype), WATER_DEPTH_BLUR * scale)
    shading = filters.convolve(depth, torch.tensor(EMBOSS)).clamp_min(0)
    shading = filters.convolve(shading, torch.full((3, 3), 1 / 9))
    puddles = liquid * shading
    puddles = intensity * puddles / puddles.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    return images + puddles * paint(WATER_RGB, images)


def mud_splash(images: Tensor, mask: Tensor, blur: float) -> Tensor:
    """x·(1 − m) + m·mud brown with m the splash mask blurred with σ = `blur` and kept where ≥ 0.8, as
    published."""
    coverage = filters.gaussian_filter(mask.to(images.dtype), blur)
    coverage = torch.where(coverage < MUD_OPAQUE, 0, coverage)
    return images * (1 - coverage) + coverage * paint(MUD_RGB, images)
