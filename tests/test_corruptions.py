"""The corruption library keeps its contract for every corruption (seeded, in [0, 1], any size and channel
count, stronger at higher severity), and CorruptedDataModule serves seeded cells of a real dataset."""

import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from lit_vir.checks import ConfigError
from lit_vir.data import (
    BENCHMARK_CORRUPTIONS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    CorruptedDataModule,
    DigitsDataModule,
    corrupt,
)
from lit_vir.data.corruptions.contract import corruption
from tests.conftest import CONFIGS, TINY_VIR

# Corruptions that draw random numbers; the others are deterministic functions of the image.
RANDOM = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "snow",
    "frost",
    "fog",
    "elastic_transform",
    "speckle_noise",
    "spatter",
}
SHAPES = [(1, 28, torch.float32), (3, 32, torch.float32), (3, 28, torch.float64), (1, 8, torch.float32)]


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def natural_images(count: int, channels: int, side: int) -> torch.Tensor:
    """Real handwritten digits (scikit-learn), upscaled smoothly to side×side and lifted off black; RGB
    images add a smooth, moderately saturated colour gradient, so blurs and colour changes both show."""
    digits = torch.tensor(load_digits().images[:count], dtype=torch.float32)[:, None] / 16  # (count, 1, 8, 8)
    strokes = F.interpolate(digits, size=(side, side), mode="bilinear", align_corners=False)
    if channels == 1:
        return 0.15 + 0.7 * strokes
    ramp = torch.linspace(0, 1, side)
    gradient = torch.stack([ramp.expand(side, side), ramp[:, None].expand(side, side), 1 - ramp.expand(side, side)])
    return (0.15 + 0.55 * strokes + 0.25 * gradient).clamp(0, 1)


def mean_change(name: str, images: torch.Tensor, severity: int) -> float:
    return (corrupt(images, name, severity, seeded(0)) - images).abs().mean().item()


def test_the_benchmark_lists_the_15_in_published_order_and_4_extras():
    assert BENCHMARK_CORRUPTIONS == (
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "defocus_blur",
        "glass_blur",
        "motion_blur",
        "zoom_blur",
        "snow",
        "frost",
        "fog",
        "brightness",
        "contrast",
        "elastic_transform",
        "pixelate",
        "jpeg_compression",
    )
    assert EXTRA_CORRUPTIONS == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    assert set(CORRUPTIONS) == set(BENCHMARK_CORRUPTIONS) | set(EXTRA_CORRUPTIONS)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_same_seed_gives_the_same_output(name):
    images = natural_images(6, 3, 32)
    assert torch.equal(corrupt(images, name, 3, seeded(7)), corrupt(images, name, 3, seeded(7)))


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_corruptions_change_with_the_seed(name):
    images = natural_images(6, 3, 32)
    assert not torch.equal(corrupt(images, name, 3, seeded(1)), corrupt(images, name, 3, seeded(2)))


@pytest.mark.parametrize("name", sorted(set(CORRUPTIONS) - RANDOM))
def test_deterministic_corruptions_ignore_the_seed(name):
    images = natural_images(6, 3, 32)
    assert torch.equal(corrupt(images, name, 3, seeded(1)), corrupt(images, name, 3, seeded(2)))


@pytest.mark.parametrize("name", CORRUPTIONS)
@pytest.mark.parametrize(("channels", "side", "dtype"), SHAPES)
def test_output_keeps_shape_and_dtype(name, channels, side, dtype):
    images = natural_images(4, channels, side).to(dtype)
    for severity in (1, 5):
        corrupted = corrupt(images, name, severity, seeded(0))
        assert corrupted.shape == images.shape and corrupted.dtype == dtype


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_is_wrapped_by_the_contract(name):
    """The [0, 1] clip and the dtype round trip are the contract's wrapper (checked on the published formulas
    below), so what can go wrong for a corruption is to be registered without it."""
    assert CORRUPTIONS[name].__code__ is corruption(lambda images, severity, generator: images).__code__
    assert CORRUPTIONS[name].__wrapped__.__name__ == name


def test_noise_and_brightness_are_clipped_to_the_unit_interval_as_published():
    """The published recipe: np.clip(x + N(0, σ²), 0, 1), and V ← np.clip(V + c, 0, 1) in HSV (grey: x + c).
    Pixels from 0 to 1 leave the interval at both ends before the clip."""
    images = torch.linspace(0, 1, 3 * 32 * 32).reshape(1, 3, 32, 32).expand(2, 3, 32, 32).contiguous()
    noise = 0.10 * torch.randn(images.shape, generator=seeded(3))  # σ of severity 5, one draw per value
    assert torch.equal(corrupt(images, "gaussian_noise", 5, seeded(3)), (images + noise).clamp(0, 1))
    assert ((images + noise) > 1).any() and ((images + noise) < 0).any()
    grey = images[:, :1]
    torch.testing.assert_close(corrupt(grey, "brightness", 5, seeded(0)), (grey + 0.3).clamp(max=1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", CORRUPTIONS)
@pytest.mark.parametrize("level", [0.0, 1.0])
def test_black_and_white_images_give_finite_output(name, level):
    """Only finite, on purpose: what can go wrong on a constant image is a 0/0 (HSV of grey, a blur normalised by
    a zero sum, log 0), and a NaN survives the clip; the values are checked by the formula tests."""
    images = torch.full((2, 3, 32, 32), level)
    assert torch.isfinite(corrupt(images, name, 5, seeded(0))).all()  # only finite: see the docstring


@pytest.mark.parametrize("name", [name for name in CORRUPTIONS if name != "elastic_transform"])
@pytest.mark.parametrize(("channels", "side"), [(3, 32), (1, 28)])
def test_severity_5_changes_images_more_than_severity_1(name, channels, side):
    images = natural_images(8, channels, side)
    assert mean_change(name, images, 5) > mean_change(name, images, 1)


def affine_residual(images: torch.Tensor, margin: int) -> float:
    """Largest deviation of the interior pixels from their best plane a·x + b·y + c."""
    side = images.shape[-1]
    rows, columns = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    inside = slice(margin, side - margin)
    design = torch.stack([columns[inside, inside], rows[inside, inside], torch.ones_like(rows[inside, inside])])
    design = design.flatten(1).T.double()  # (pixels, 3)
    worst = 0.0
    for image in images[:, 0, inside, inside].flatten(1).double():
        fitted = design @ torch.linalg.lstsq(design, image[:, None]).solution
        worst = max(worst, (fitted[:, 0] - image).abs().max().item())
    return worst


def test_elastic_severity_1_is_a_pure_affine_warp_and_severity_5_adds_local_displacement():
    # The published constants are not monotone in pixel change: severity 1 is the largest affine jitter
    # (±0.08·side) with no displacement field (k = 0); severity 5 a smaller affine plus a local field.
    side = 32
    rows, columns = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    plane = (0.25 + 0.5 * (0.6 * columns + 0.4 * rows) / (side - 1)).float()
    images = plane.expand(4, 1, side, side)
    warped = corrupt(images, "elastic_transform", 1, seeded(0))
    assert not torch.allclose(warped, images, atol=1e-3)
    assert affine_residual(warped, margin=8) < 1e-4
    assert affine_residual(corrupt(images, "elastic_transform", 5, seeded(0)), margin=8) > 1e-3


def test_gaussian_noise_adds_the_published_standard_deviation_times_a_seeded_normal():
    images = torch.full((8, 3, 32, 32), 0.5)
    for severity, std in ((1, 0.04), (5, 0.10)):
        expected = (images + std * torch.randn(images.shape, generator=seeded(severity))).clamp(0, 1)
        assert torch.equal(corrupt(images, "gaussian_noise", severity, seeded(severity)), expected)


def test_impulse_noise_sets_the_published_fraction_to_black_or_white():
    """skimage's s&p: a value is flipped where a first U[0, 1) draw is ≤ p (severity 5: 0.07), to 1 where a
    second is ≤ 0.5, else to 0 — both draws from the generator, per value."""
    images = torch.full((8, 3, 32, 32), 0.5)
    generator = seeded(0)
    flipped = torch.rand(images.shape, generator=generator) <= 0.07
    salted = torch.rand(images.shape, generator=generator) <= 0.5
    assert torch.equal(corrupt(images, "impulse_noise", 5, seeded(0)), torch.where(flipped, salted.float(), images))


def test_brightness_adds_the_published_constant_to_grey_images():
    images = natural_images(4, 1, 28) * 0.5
    assert torch.allclose(corrupt(images, "brightness", 5, seeded(0)), images + 0.3, atol=1e-5)


def test_contrast_keeps_channel_means_and_scales_deviations():
    images = natural_images(4, 3, 32)
    corrupted = corrupt(images, "contrast", 2, seeded(0))
    means = images.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(corrupted, (images - means) * 0.5 + means, atol=1e-6)


def test_pixelate_leaves_only_as_many_distinct_columns_as_the_small_image():
    images = natural_images(2, 3, 32)
    corrupted = corrupt(images, "pixelate", 5, seeded(0))  # 32 → ⌊32·0.65⌋ = 20 → 32
    assert len(torch.unique(corrupted[0, 0], dim=1).T) <= 20 < len(torch.unique(images[0, 0], dim=1).T)


def test_jpeg_compression_returns_8_bit_levels():
    corrupted = corrupt(natural_images(2, 3, 32), "jpeg_compression", 3, seeded(0))
    assert torch.allclose(corrupted * 255, (corrupted * 255).round(), atol=1e-4)


def test_unknown_corruption_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"'gaussian_noise'.*'saturate'"):
        corrupt(natural_images(1, 1, 8), "gaussian_nosie", 1, seeded(0))


@pytest.mark.parametrize("severity", [0, 6])
def test_severity_outside_1_to_5_is_refused(severity):
    images = natural_images(1, 1, 8)
    with pytest.raises(ConfigError, match=rf"severity = {severity} is outside the allowed range \[1, 5\]"):
        corrupt(images, "fog", severity, seeded(0))
    with pytest.raises(ConfigError, match="severity"):
        CORRUPTIONS["fog"](images, severity, seeded(0))


def test_images_that_are_not_a_float_batch_are_refused():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        corrupt(torch.zeros(3, 32, 32), "fog", 1, seeded(0))
    with pytest.raises(ValueError, match="uint8"):
        corrupt(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "fog", 1, seeded(0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_cuda_images_get_the_same_corruption_from_a_cpu_generator(name):
    images = natural_images(4, 3, 32)
    on_cpu = corrupt(images, name, 3, seeded(0))
    on_cuda = corrupt(images.cuda(), name, 3, seeded(0))
    assert on_cuda.is_cuda
    assert (on_cuda.cpu() - on_cpu).abs().mean() < 1e-3


# CorruptedDataModule: generated corruptions of a real dataset's test split.


def corrupted_digits(**kwargs) -> CorruptedDataModule:
    kwargs = {"corruptions": ["gaussian_noise", "contrast"], "severities": [1, 3], **kwargs}
    data = CorruptedDataModule(DigitsDataModule(), **kwargs)
    data.prepare_data()
    data.setup("test")
    return data


def everything(loader) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(loader)
    return torch.cat([images for images, _ in batches]), torch.cat([labels for _, labels in batches])


def test_cells_are_corruption_major_with_one_loader_each():
    data = corrupted_digits()
    assert data.cells == [("clean", 0), ("gaussian_noise", 1), ("gaussian_noise", 3), ("contrast", 1), ("contrast", 3)]
    loaders = data.test_dataloader()
    assert len(loaders) == 5
    assert [len(loader.dataset) for loader in loaders] == [359] * 5


def test_clean_cell_is_the_wrapped_test_split_normalised():
    data = corrupted_digits()
    digits = DigitsDataModule()
    digits.setup("test")
    clean_images, clean_labels = everything(data.test_dataloader()[0])
    expected = torch.stack([digits.test_set[index][0] for index in range(len(digits.test_set))])
    assert torch.allclose(clean_images, expected) and clean_labels.tolist() == [
        digits.test_set[index][1] for index in range(len(digits.test_set))
    ]


def test_clean_cell_can_be_left_out():
    data = CorruptedDataModule(DigitsDataModule(), corruptions=["fog"], severities=[2], include_clean=False)
    assert data.cells == [("fog", 2)]


def test_it_links_like_the_wrapped_dataset():
    data = corrupted_digits()
    assert (data.num_classes, data.image_size, data.in_channels) == (10, 8, 1)


def test_all_benchmark_corruptions_at_all_severities_by_default():
    data = CorruptedDataModule(DigitsDataModule())
    assert data.cells == [("clean", 0)] + [
        (name, severity) for name in BENCHMARK_CORRUPTIONS for severity in (1, 2, 3, 4, 5)
    ]


def test_corruption_does_not_depend_on_batch_size_or_access_order():
    small, large = corrupted_digits(batch_size=7), corrupted_digits(batch_size=64)
    images_small, labels_small = everything(small.test_dataloader()[1])
    images_large, labels_large = everything(large.test_dataloader()[1])
    assert torch.equal(images_small, images_large) and torch.equal(labels_small, labels_large)
    fresh = corrupted_digits().cell_sets[1]
    assert torch.equal(fresh[300][0], images_small[300]) and torch.equal(fresh[3][0], images_small[3])


def test_the_seed_changes_random_corruptions():
    first, _ = everything(corrupted_digits(seed=0).test_dataloader()[1])
    second, _ = everything(corrupted_digits(seed=1).test_dataloader()[1])
    assert not torch.equal(first, second)


def test_each_chunk_of_a_cell_gets_its_own_noise():
    cell = corrupted_digits().cell_sets[1]  # gaussian_noise, severity 1 (σ 0.04); 359 images: chunks 0 and 1
    count = len(cell) - cell.chunk_size

    def clean_and_noise(chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        clean = cell.images[chunk * cell.chunk_size :][:count]
        noisy = cell.chunk(chunk)[:count] * DigitsDataModule.std[0] + DigitsDataModule.mean[0]
        return clean, noisy - clean

    clean_first, noise_first = clean_and_noise(0)
    clean_second, noise_second = clean_and_noise(1)
    unclipped = (clean_first - 0.5).abs().lt(0.3) & (clean_second - 0.5).abs().lt(0.3)  # 5σ from 0 and 1
    assert unclipped.sum() > 100
    assert not torch.allclose(noise_first[unclipped], noise_second[unclipped], atol=1e-3)


def test_images_are_corrupted_then_normalised_like_the_wrapped_dataset():
    data = corrupted_digits()
    images, labels = everything(data.test_dataloader()[4])  # contrast, severity 3: deterministic
    clean = DigitsDataModule()
    split = clean.load_split(train=False)
    pixels = torch.stack([split[index][0] for index in range(len(split))])  # (N, 1, 8, 8) in [0, 1]
    expected = (corrupt(pixels, "contrast", 3, seeded(0)) - clean.mean[0]) / clean.std[0]
    assert torch.allclose(images, expected, atol=1e-5)
    assert torch.equal(labels, torch.stack([split[index][1] for index in range(len(split))]))


def test_training_on_corrupted_data_is_refused():
    data = CorruptedDataModule(DigitsDataModule(), corruptions=["fog"])
    with pytest.raises(ConfigError, match="only corrupted test images"):
        data.setup("fit")


def test_bad_corruptions_and_severities_are_config_errors():
    with pytest.raises(ConfigError, match="corruptions = 'fogg' is not one of"):
        CorruptedDataModule(DigitsDataModule(), corruptions=["fogg"])
    with pytest.raises(ConfigError, match=r"severities = 7 is outside the allowed range \[1, 5\]"):
        CorruptedDataModule(DigitsDataModule(), severities=[1, 7])
    with pytest.raises(ConfigError, match="without repeats"):
        CorruptedDataModule(DigitsDataModule(), severities=[2, 2])


def test_a_yaml_config_builds_it_around_the_dataset_and_links_the_model():
    from lit_vir.cli import build_from_config

    config = ["-c", str(CONFIGS / "vir.yaml"), "-c", str(CONFIGS / "data/corrupted_digits.yaml"), *TINY_VIR]
    model, data = build_from_config(config)
    assert isinstance(data, CorruptedDataModule) and isinstance(data.dataset, DigitsDataModule)
    assert model.hparams.num_classes == 10 and len(data.cells) == 1 + 75  # the clean cell and 15 × 5
