"""The from-scratch recipe's parts: augmentation only in training, MixUp/CutMix targets, one weight-decay rule,
the warm-up cosine schedule."""

import math
import re

import pytest
import torch

from lit_vir.checks import ConfigError
from lit_vir.data import DigitsDataModule
from lit_vir.models import MobileViT, ReViT, SearchableViT, TimmModel, ViR, VisionTransformer, ViTAEv2
from lit_vir.training import BatchMixing, ImageClassifier, WarmupCosineLR
from lit_vir.training.weight_decay import no_weight_decay_names, parameter_groups


def ready(**options) -> DigitsDataModule:
    data = DigitsDataModule(batch_size=16, **options)
    data.setup("fit")
    data.setup("test")
    return data


@pytest.mark.parametrize("options", [dict(auto_augment="rand_augment"), dict(random_erasing=1.0)])
def test_augmentation_changes_training_images_only_and_keeps_shapes_and_labels(options):
    plain, augmented = ready(), ready(**options)
    torch.manual_seed(0)
    first = [augmented.train_set[index] for index in range(8)]
    second = [augmented.train_set[index] for index in range(8)]
    for (image, label), (_, label_again), (clean, clean_label) in zip(
        first, second, (plain.train_set[index] for index in range(8)), strict=True
    ):
        assert image.shape == clean.shape == (1, 8, 8) and label == label_again == clean_label
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(first, second, strict=True))  # drawn anew each time
    for split in ("val_set", "test_set"):
        for index in range(8):
            assert torch.equal(getattr(augmented, split)[index][0], getattr(plain, split)[index][0])


def test_trivial_augment_is_refused_where_its_shifts_empty_the_image():
    with pytest.raises(ConfigError, match=r"trivial_augment.*8×8 px.*rand_augment"):
        DigitsDataModule(auto_augment="trivial_augment")


def test_an_unknown_policy_is_refused_with_the_choices():
    with pytest.raises(
        ConfigError, match=r"auto_augment = 'autoaugment' is not one of 'rand_augment', 'trivial_augment'"
    ):
        DigitsDataModule(auto_augment="autoaugment")


@pytest.mark.parametrize("mixing", [BatchMixing(cutmix_alpha=0), BatchMixing(mixup_alpha=0), BatchMixing()])
def test_mixed_targets_are_distributions_of_the_two_mixed_labels(mixing):
    torch.manual_seed(3)
    images = torch.rand(16, 1, 8, 8)
    labels = torch.arange(16)  # 16 classes, all different: each target row shows whom it was mixed with
    mixed, targets = mixing(images, labels, 16)
    assert mixed.shape == images.shape and targets.shape == (16, 16)
    assert torch.allclose(targets.sum(dim=1), torch.ones(16))
    # torchvision mixes each image with the previous one in the batch (rolled by 1): only those two labels get mass
    partner = labels.roll(1)
    others = torch.ones(16, 16, dtype=torch.bool)
    others[labels, labels] = others[labels, partner] = False
    assert targets[others].abs().max() == 0
    weight = targets[0, 0].item()  # λ, the share of image 0 itself
    if mixing.cutmix_alpha == 0:  # MixUp: the image is the same blend as the target
        assert torch.allclose(mixed[0], weight * images[0] + (1 - weight) * images[-1], atol=1e-6)
    if mixing.mixup_alpha == 0:  # CutMix: each pixel comes from one of the two, the kept share is the weight
        from_own = (mixed[0] == images[0]).double().mean().item()
        assert from_own == pytest.approx(weight, abs=1e-9)


def test_training_loss_uses_the_soft_targets_and_accuracy_the_hard_labels():
    torch.manual_seed(0)
    backbone = ViR(5, 8, 1, patch_size=2, embed_dim=8, num_nodes=20, jump_size=3, mlp_dim=16)
    module = ImageClassifier(backbone, num_classes=5, batch_mixing=BatchMixing(cutmix_alpha=0))
    images, labels = torch.rand(12, 1, 8, 8), torch.arange(12) % 5
    torch.manual_seed(1)
    loss = module.training_step((images, labels), 0)
    torch.manual_seed(1)
    mixed, targets = BatchMixing(cutmix_alpha=0)(images, labels, 5)
    logits = backbone(mixed)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, targets).item(), rel=1e-6)
    expected = (logits.argmax(dim=-1) == labels).double().mean().item()
    assert module.train_metrics["acc"].compute().item() == pytest.approx(expected)


def mixed_by_cutmix(mixed: torch.Tensor, images: torch.Tensor) -> bool:
    """CutMix takes every pixel of image 0 from image 0 or from its partner (the last image); MixUp blends them."""
    return bool(((mixed[0] == images[0]) | (mixed[0] == images[-1])).all())


def test_the_defaults_are_deits_and_switch_prob_chooses_cutmix():
    """DeiT's recipe: MixUp α 0.8, CutMix α 1.0, one of them per batch with even odds, every batch mixed."""
    default = BatchMixing()
    assert (default.mixup_alpha, default.cutmix_alpha, default.switch_prob, default.prob) == (0.8, 1.0, 0.5, 1.0)
    mixup, cutmix = default.transform(10).transforms
    assert (type(mixup).__name__, mixup.alpha, type(cutmix).__name__, cutmix.alpha) == ("MixUp", 0.8, "CutMix", 1.0)
    assert default.transform(10).p == [0.5, 0.5]
    images, labels = torch.rand(8, 1, 8, 8), torch.arange(8)
    for switch_prob, cutmix_expected in ((1.0, True), (0.0, False)):
        for seed in range(4):
            torch.manual_seed(seed)
            mixed, _ = BatchMixing(switch_prob=switch_prob)(images, labels, 8)
            assert mixed_by_cutmix(mixed, images) is cutmix_expected
    assert BatchMixing(mixup_alpha=0, switch_prob=0.0).transform(10).p == [1.0]  # the only one left always runs
    assert BatchMixing(cutmix_alpha=0, switch_prob=1.0).transform(10).p == [1.0]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_prob_is_the_chance_that_a_batch_is_mixed(seed):
    """A batch is mixed when a draw of U[0, 1) from the global stream is below `prob`; otherwise it passes with
    one-hot targets."""
    images, labels = torch.rand(8, 1, 8, 8), torch.arange(8) % 5
    torch.manual_seed(seed)
    mixed_here = torch.rand(()).item() < 0.4
    torch.manual_seed(seed)
    mixed, targets = BatchMixing(prob=0.4)(images, labels, 5)
    if mixed_here:
        assert not torch.equal(mixed, images)
    else:
        assert torch.equal(mixed, images) and torch.equal(targets, torch.nn.functional.one_hot(labels, 5).float())
    never = BatchMixing(prob=0.0)(images, labels, 5)
    assert torch.equal(never[0], images) and torch.equal(never[1], torch.nn.functional.one_hot(labels, 5).float())
    assert never[1].dtype == images.dtype  # float targets, as the mixed ones are
    _, unmixed = BatchMixing(prob=0.0)(images, labels % 3, 5)  # classes 3 and 4 absent from the batch
    assert unmixed.shape == (8, 5) and not unmixed[:, 3:].any()


def test_the_alphas_reach_torchvisions_mixers():
    mixup, cutmix = BatchMixing(mixup_alpha=0.3, cutmix_alpha=0.6).transform(10).transforms
    assert (mixup.alpha, cutmix.alpha) == (0.3, 0.6)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mixup_alpha": -0.1}, r"mixup_alpha = -0.1 is outside the allowed range \[0, inf\)"),
        ({"cutmix_alpha": -1}, r"cutmix_alpha = -1 is outside the allowed range \[0, inf\)"),
        ({"switch_prob": 1.5}, r"switch_prob = 1.5 is outside the allowed range \[0, 1\]"),
        ({"prob": -0.5}, r"prob = -0.5 is outside the allowed range \[0, 1\]"),
    ],
)
def test_mixing_values_outside_their_ranges_are_refused(options, message):
    with pytest.raises(ConfigError, match=r"^BatchMixing: " + message):
        BatchMixing(**options)


def test_both_alphas_zero_is_refused():
    with pytest.raises(ConfigError) as error:
        BatchMixing(mixup_alpha=0, cutmix_alpha=0)
    assert str(error.value) == "BatchMixing: mixup_alpha and cutmix_alpha are both 0: nothing would be mixed; drop it."


def expected_exempt(model: torch.nn.Module) -> set[str]:
    """By name, independently of the rule's ndim test: biases, normalisation parameters, positions, class tokens,
    ReViT's α, ViT-Slim's masks."""
    norms = {
        f"{name}.{parameter}".lstrip(".")
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.modules.batchnorm._NormBase | torch.nn.LayerNorm | torch.nn.GroupNorm)
        for parameter, _ in module.named_parameters(recurse=False)
    }
    named = {
        name for name, _ in model.named_parameters() if re.search(r"(^|\.)(bias|pos_embed|cls_token|alpha)$", name)
    }
    masks = {name for name, _ in model.named_parameters() if name in SearchableViT.MASK_PARAMETERS}
    return norms | named | masks


MODELS = {
    "vir": lambda: ViR(10, 8, 1, patch_size=2, embed_dim=8, num_nodes=20, jump_size=3, mlp_dim=16, depth=2),
    "vit": lambda: VisionTransformer(10, 8, 1, patch_size=2, embed_dim=16, depth=2, num_heads=2),
    "revit": lambda: ReViT(10, 8, 1, patch_size=2, embed_dim=16, depth=2, num_heads=2),
    "vit_slim": lambda: SearchableViT(10, 8, 1, patch_size=2, embed_dim=16, depth=2, num_heads=2),
    "vitae": lambda: ViTAEv2(10, 28, 1),
    "mobilevit": lambda: MobileViT(10, 32, 3),
    "timm_deit": lambda: TimmModel(10, 8, 1, name="deit_tiny_patch16_224", options={"patch_size": 2}),
    "timm_resnet": lambda: TimmModel(10, 8, 1, name="resnet18"),
}


@pytest.mark.parametrize("name", MODELS)
def test_no_decay_covers_exactly_biases_norms_positions_tokens_alpha_and_masks(name):
    model = MODELS[name]()
    assert no_weight_decay_names(model) == expected_exempt(model)


def test_the_optimiser_gets_decay_only_on_the_other_parameters():
    model = ReViT(10, 8, 1, patch_size=2, embed_dim=16, depth=2, num_heads=2)
    optimizer = torch.optim.AdamW(parameter_groups(model), lr=1e-3, weight_decay=0.05)
    decayed, exempt = optimizer.param_groups
    assert decayed["weight_decay"] == 0.05 and exempt["weight_decay"] == 0.0
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    assert {names[id(p)] for p in exempt["params"]} == expected_exempt(model)
    assert "alpha" in {names[id(p)] for p in exempt["params"]}
    assert {names[id(p)] for p in decayed["params"]} == set(names.values()) - expected_exempt(model)


# --- the warm-up cosine schedule ------------------------------------------------------------------------------


def rates(scheduler: WarmupCosineLR, steps: int) -> list[float]:
    """The learning rate at scheduler steps 0..steps−1 (the first is the rate before any step)."""
    seen = []
    for _ in range(steps):
        seen.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return seen


def sgd(lr: float = 0.1) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def cosine_by_hand(step: int, warmup: int, total: int, low: float) -> float:
    """timm's recipe written out: (s + 1)/(w + 1) in the warm-up, then low + (1 − low)·(1 + cos(π·p))/2 with
    p = (s − w)/(total − w), held at p = 1 after the end."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / (total - warmup))
    return low + (1 - low) * (1 + math.cos(math.pi * progress)) / 2


@pytest.mark.parametrize(
    ("options", "warmup", "total", "low"), [({}, 5, 8, 0.0), ({"warmup": 3}, 3, 10, 0.1), ({"warmup": 3}, 3, 4, 0.0)]
)
def test_warmup_cosine_rates_are_timms_formula(options, warmup, total, low):
    options = options | ({"min_lr_ratio": low} if low else {})
    seen = rates(WarmupCosineLR(sgd(0.1), total=total, **options), total + 3)  # 3 steps past the end
    expected = [0.1 * cosine_by_hand(step, warmup, total, low) for step in range(total + 3)]
    assert seen == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert seen[-1] == pytest.approx(0.1 * low, abs=1e-15)  # held at the floor


def test_a_schedule_spanned_later_decays_over_that_span():
    scheduler = WarmupCosineLR(sgd(0.2), warmup=0)
    assert scheduler.needs_span() and scheduler.optimizer.param_groups[0]["lr"] == 0.2  # the base rate until spanned
    scheduler.span(4)
    assert not scheduler.needs_span()
    expected = [0.2 * cosine_by_hand(step, 0, 4, 0.0) for step in range(1, 6)]
    assert rates(scheduler, 6)[1:] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_a_time_budgeted_schedule_decays_with_the_time_spent():
    clock = [0.0]
    scheduler = WarmupCosineLR(sgd(0.1), warmup=1, min_lr_ratio=0.2)
    scheduler.span_time(50.0, lambda: clock[0])
    assert not scheduler.needs_span()
    for spent in (0.0, 10.0, 25.0, 50.0, 80.0):  # fraction of the budget spent, 1 at most
        clock[0] = spent
        scheduler.step()
        progress = min(1.0, spent / 50.0)
        assert scheduler.get_last_lr()[0] == pytest.approx(0.1 * (0.2 + 0.8 * (1 + math.cos(math.pi * progress)) / 2))
    assert "budget" not in scheduler.state_dict()  # the clock is the trainer's, set again on resume


def test_a_time_budget_counts_from_the_first_step_after_the_warm_up():
    """At step = warmup the rate is the cosine of the budget already spent (half of it: half the base rate), not the
    warm-up's last value."""
    scheduler = WarmupCosineLR(sgd(0.1), warmup=2)
    scheduler.span_time(60.0, lambda: 30.0)
    assert rates(scheduler, 3) == pytest.approx([0.1 / 3, 0.2 / 3, 0.1 * 0.5])


def test_each_modules_declared_exemptions_count_under_their_full_names():
    """`no_weight_decay()` of the model itself and of two submodules: their names joined to the module's path, the
    union of all three (2-D weights, which the ndim rule alone would decay)."""

    class Declares(torch.nn.Linear):
        def no_weight_decay(self) -> set[str]:
            return {"weight"}

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = Declares(2, 2), Declares(2, 2), torch.nn.Linear(2, 2)
            self.d = torch.nn.Sequential(Declares(2, 2))

        def no_weight_decay(self) -> set[str]:
            return {"c.weight"}

    exempt = no_weight_decay_names(Model())
    weights = {"a.weight", "b.weight", "c.weight", "d.0.weight"}
    assert exempt == weights | {"a.bias", "b.bias", "c.bias", "d.0.bias"}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: WarmupCosineLR(sgd(), warmup=-1), r"warmup = -1 is outside the allowed range \[0, inf\)"),
        (lambda: WarmupCosineLR(sgd(), min_lr_ratio=1.5), r"min_lr_ratio = 1.5 is outside the allowed range \[0, 1\]"),
        (lambda: WarmupCosineLR(sgd(), min_lr_ratio=-0.1), r"min_lr_ratio = -0.1 is outside"),
        (lambda: WarmupCosineLR(sgd(), total=0), r"total = 0 is outside the allowed range \[1, inf\)"),
        (
            lambda: WarmupCosineLR(sgd(), warmup=5, total=4),
            r"warmup = 5 is outside the allowed range \[0, 4\]\. warmup must not exceed total\.",
        ),
        (
            lambda: WarmupCosineLR(sgd()).span_time(0.0, lambda: 0.0),
            r"time budget \(s\) = 0.0 is outside the allowed range \(0, inf\)",
        ),
    ],
)
def test_schedule_values_outside_their_ranges_are_refused(build, message):
    with pytest.raises(ConfigError, match=r"^WarmupCosineLR: " + message):
        build()


def test_the_boundaries_of_the_ranges_are_accepted():
    assert rates(WarmupCosineLR(sgd(), warmup=4, total=4, min_lr_ratio=1.0), 6) == pytest.approx(
        [0.02, 0.04, 0.06, 0.08, 0.1, 0.1]
    )
