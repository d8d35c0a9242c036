"""Noise: gaussian_noise, shot_noise, impulse_noise (benchmark) and speckle_noise (extra), per pixel and
channel, exactly as the published recipe (Hendrycks & Dietterich 2019, `make_cifar_c.py`)."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_vir.data.corruptions.contract import at_severity, corruption
from lit_vir.data.corruptions.sampling import normal, poisson, uniform

__all__ = ["gaussian_noise", "impulse_noise", "shot_noise", "speckle_noise"]

GAUSSIAN_NOISE_STD = (0.04, 0.06, 0.08, 0.09, 0.10)  # σ
SHOT_NOISE_PHOTONS = (500, 250, 100, 75, 50)  # λ
IMPULSE_NOISE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)  # p
SPECKLE_NOISE_STD = (0.06, 0.10, 0.12, 0.16, 0.20)  # σ
SALT_VS_PEPPER = 0.5  # skimage's default share of flipped values set to 1


@corruption
def gaussian_noise(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """x + N(0, σ²): sensor read noise."""
    std = at_severity(GAUSSIAN_NOISE_STD, severity)
    return images + normal(tuple(images.shape), generator, images, std=std)


@corruption
def shot_noise(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Poisson(λ·x)/λ: photon counting noise, stronger for fewer photons λ."""
    photons = at_severity(SHOT_NOISE_PHOTONS, severity)
    return poisson(images * photons, generator) / photons


@corruption
def impulse_noise(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """Salt and pepper (skimage `random_noise(mode="s&p")`): a fraction p of the values, chosen per pixel
    and channel, becomes 1 or 0 with equal odds."""
    amount = at_severity(IMPULSE_NOISE_AMOUNT, severity)
    flipped = uniform(tuple(images.shape), generator, images) <= amount
    salted = uniform(tuple(images.shape), generator, images) <= SALT_VS_PEPPER
    return torch.where(flipped, salted.to(images.dtype), images)


@corruption
def speckle_noise(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    """x + x·N(0, σ²): multiplicative noise, strongest in bright regions."""
    std = at_severity(SPECKLE_NOISE_STD, severity)
    return images + images * normal(tuple(images.shape), generator, images, std=std)
