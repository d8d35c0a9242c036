"""The data loaders every datamodule shares (`lit_vir/data/base.py`), on scikit-learn's digits (real, offline):
batch sizes, shuffling from the module's own generator, every image kept, evaluation in order without touching the
global random stream, the loader options passed through, the augmentation policy's settings, and the defaults
the published runs used."""

from __future__ import annotations

import inspect

import pytest
import torch
from torchvision.transforms import v2

from lit_vir.checks import ConfigError
from lit_vir.data import DigitsDataModule
from lit_vir.data.base import ImageDataModule, TransformedSubset


def digits(**options) -> DigitsDataModule:
    module = DigitsDataModule(**options)
    module.setup("fit")
    module.setup("test")
    return module


def labels_of(loader) -> list[int]:
    return [int(label) for _, labels in loader for label in labels]


def test_training_batches_shuffle_from_the_modules_generator_and_keep_every_image():
    module = digits(batch_size=64, eval_batch_size=500)
    size = len(module.train_set)
    loader = module.train_dataloader()
    sizes = [len(labels) for _, labels in loader]
    assert sizes == [64] * (size // 64) + ([size % 64] if size % 64 else [])  # the last, short batch is kept
    in_order = [module.train_set[index][1] for index in range(size)]
    first, second = labels_of(loader), labels_of(loader)
    assert sorted(first) == sorted(in_order) and first != in_order and second != first  # reshuffled each epoch
    torch.manual_seed(0)  # the global stream plays no part: the module's generator, saved with its state, does
    again = digits(batch_size=64)
    again.load_state_dict(module.state_dict())
    assert labels_of(again.train_dataloader()) == labels_of(module.train_dataloader())


def test_evaluation_batches_are_in_order_at_their_own_size_and_leave_the_global_stream_alone():
    module = digits(batch_size=64, eval_batch_size=100)
    for loader, subset in ((module.val_dataloader(), module.val_set), (module.test_dataloader(), module.test_set)):
        state = torch.random.get_rng_state()
        seen = labels_of(loader)
        assert torch.equal(torch.random.get_rng_state(), state)
        assert seen == [subset[index][1] for index in range(len(subset))]  # the dataset's order
        assert next(len(labels) for _, labels in loader) == min(100, len(subset))
    assert labels_of(module.predict_dataloader()) == labels_of(module.test_dataloader())
    shuffle_state = module.shuffle_generator.get_state()
    labels_of(module.val_dataloader())  # nor the training shuffle's generator: a resumed run shuffles the same
    assert torch.equal(module.shuffle_generator.get_state(), shuffle_state)
    assert digits(batch_size=32).val_dataloader().batch_size == 32  # eval_batch_size defaults to batch_size


def test_the_shuffle_follows_the_runs_seed():
    orders = []
    for seed in (1, 2, 1, 2**63 + 5):  # seed_everything's value, whatever its size
        torch.manual_seed(seed)
        orders.append(labels_of(digits(batch_size=500).train_dataloader()))
    assert orders[0] == orders[2] and orders[0] != orders[1] and orders[3] not in orders[:2]


def test_the_loader_options_reach_the_dataloaders():
    module = digits(num_workers=1, pin_memory=True, persistent_workers=True)
    for loader in (module.train_dataloader(), module.val_dataloader()):
        assert (loader.num_workers, loader.pin_memory, loader.persistent_workers) == (1, True, True)
        assert loader.drop_last is False
    assert digits(num_workers=1).train_dataloader().persistent_workers is False  # only when asked for
    plain = digits(persistent_workers=True)  # no workers to keep: PyTorch refuses persistent_workers without them
    assert (plain.train_dataloader().num_workers, plain.train_dataloader().persistent_workers) == (0, False)


def test_a_loader_before_setup_says_so():
    with pytest.raises(RuntimeError, match=r"DigitsDataModule: setup\(\) has not built this split yet"):
        DigitsDataModule().predict_dataloader()


def test_the_rand_augment_settings_reach_torchvision():
    (policy,) = DigitsDataModule(auto_augment="rand_augment", rand_augment_ops=3, rand_augment_magnitude=12).policy()
    assert isinstance(policy, v2.RandAugment) and (policy.num_ops, policy.magnitude) == (3, 12)
    assert DigitsDataModule(auto_augment=None).policy() == []


def test_trivial_augment_is_refused_below_its_smallest_image_and_named_from_it():
    with pytest.raises(
        ConfigError,
        match=r"trivial_augment' at 8×8 px.* \(allowed from 16 px\)\. Use auto_augment: rand_augment, whose shifts are "
        r"relative to the image\.$",
    ):
        DigitsDataModule(auto_augment="trivial_augment")

    class Large(DigitsDataModule):
        image_size = 16  # the smallest size it is allowed at

    (policy,) = Large(auto_augment="trivial_augment").policy()
    assert isinstance(policy, v2.TrivialAugmentWide)


def test_the_defaults_are_the_ones_the_published_runs_used():
    """DeiT's RandAugment (Touvron et al. 2021: rand-m9-n2), batches of 100, split seed 42, files downloaded when
    missing, no loader workers, under ./data."""
    defaults = {
        name: parameter.default for name, parameter in inspect.signature(ImageDataModule.__init__).parameters.items()
    }
    expected = {
        "root": "data",
        "batch_size": 100,
        "num_workers": 0,
        "pin_memory": False,
        "split_seed": 42,
        "rand_augment_ops": 2,
        "rand_augment_magnitude": 9,
        "download": True,
        "persistent_workers": False,
    }
    assert {name: defaults[name] for name in expected} == expected
    module = DigitsDataModule()
    assert (module.root, module.batch_size, module.pin_memory, module.download) == ("data", 100, False, True)
    assert (module.split_seed, module.rand_augment_ops, module.rand_augment_magnitude) == (42, 2, 9)


def test_the_preprocessing_record_is_the_modules():
    """What a checkpoint stores to read new images as in training: digits' 8×8 grey images, its mean and std over
    all 1,797 images, and the class names 0–9."""
    record = DigitsDataModule().preprocessing()
    assert (record.image_size, record.in_channels, record.mean, record.std) == (8, 1, (0.3053,), (0.3760,))
    assert record.class_names == tuple(str(digit) for digit in range(10))


@pytest.mark.parametrize(("val_size", "validation"), [(1, 1), (2, 2), (0.1, 144), (0.5, 719)])
def test_val_size_is_a_count_from_1_on_and_a_fraction_below(val_size, validation):
    """digits' training split has 1,438 images: val_size 1 is one image, 0.1 a tenth of them (rounded)."""
    module = digits(val_size=val_size)
    assert (len(module.val_set), len(module.train_set)) == (validation, 1438 - validation)


def test_a_val_size_that_leaves_no_validation_image_is_refused():
    with pytest.raises(
        ConfigError, match=r"val_size = 0.0001 leaves 1438 training and 0 validation images out of 1438"
    ):
        digits(val_size=0.0001)


def test_random_erasing_is_in_the_training_transform_only_when_asked_for():
    def erasers(module) -> list:
        return [step for step in module.train_transform().transforms if isinstance(step, v2.RandomErasing)]

    assert erasers(DigitsDataModule(random_erasing=0.0)) == []
    (eraser,) = erasers(DigitsDataModule(random_erasing=0.3))
    assert eraser.p == 0.3 and eraser.value is None  # torchvision's record of value="random" (a fill would be a list)


def test_a_subset_names_its_items_by_the_datasets_own_names_or_their_indices():
    class Named(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 5

        def source(self, index: int) -> str:
            return f"image-{index}.png"

    assert [TransformedSubset(Named(), [4, 2], str).source(i) for i in (0, 1)] == ["image-4.png", "image-2.png"]
    assert [TransformedSubset(list(range(5)), [4, 2], str).source(i) for i in (0, 1)] == ["4", "2"]


@pytest.mark.parametrize("test_size", [0, 1, 1.5, -0.2])
def test_digits_test_size_outside_zero_to_one_is_refused(test_size):
    with pytest.raises(
        ConfigError, match=rf"^DigitsDataModule: test_size = {test_size} is outside the allowed range \(0, 1\)"
    ):
        DigitsDataModule(test_size=test_size)


def test_digits_splits_are_the_published_ones_and_the_images_scikit_learns():
    """The split every digits number in the docs used (seed split_seed + 1 = 43, 359 test images): its label counts
    and its first images, found in scikit-learn's own array (scaled from 0–16 to [0, 1], float32); the positional
    arguments still reach the base class."""
    from sklearn.datasets import load_digits

    test = DigitsDataModule().load_split(train=False)
    images, labels = test.tensors
    assert images.dtype == torch.float32 and images.shape == (359, 1, 8, 8)
    assert torch.bincount(labels, minlength=10).tolist() == [34, 34, 37, 34, 31, 36, 31, 42, 35, 45]
    source = load_digits().images
    for position, index in enumerate((355, 1197, 982)):
        assert torch.equal(images[position, 0], torch.tensor(source[index] / 16.0, dtype=torch.float32))
    assert len(DigitsDataModule().load_split(train=True)) == 1797 - 359
    assert DigitsDataModule("elsewhere").root == "elsewhere"
