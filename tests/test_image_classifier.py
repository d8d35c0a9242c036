"""The LightningModule's own contract, in-process (so mutation testing can see it): the logged numbers against
hand-computed ones, the hyperparameters a checkpoint keeps, the NaN stop, the checkpoint hooks, the optimiser
and the schedule's span. The backbone is a linear map with chosen weights, so every loss and accuracy is known.
"""

from __future__ import annotations

import os
import random
import warnings
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import Logger
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from lit_vir.checks import ConfigError
from lit_vir.training import BatchMixing, ImageClassifier, WarmupCosineLR
from lit_vir.training.guards import NonFiniteLossError
from lit_vir.training.module import REFERENCE_LEARNING_RATE, _is_plain_data, _keep_plain_data
from lit_vir.training.weight_decay import parameter_groups

CLASSES = 10


class Linear(nn.Module):
    """logits = W · flatten(image) + b, W = identity by default: the prediction is the brightest pixel."""

    def __init__(self, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.head = nn.Linear(CLASSES, CLASSES)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(CLASSES) if weight is None else weight)
            self.head.bias.zero_()

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 1, 2, 5) → (B, 10)
        return self.head(images.flatten(1))


def images_for(predicted: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Images (B, 1, 2, 5) whose brightest pixel is `predicted`; the other pixels are random in [0, 0.5)."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.rand(len(predicted), CLASSES, generator=generator) * 0.5
    pixels[torch.arange(len(predicted)), predicted] = 1.0 + torch.rand(len(predicted), generator=generator)
    return pixels.view(-1, 1, 2, 5)


def labelled(correct: int, wrong: int, seed: int = 0) -> TensorDataset:
    """A dataset of `correct` images the identity backbone gets right, then `wrong` it gets wrong."""
    labels = torch.arange(correct + wrong) % CLASSES
    predicted = labels.clone()
    predicted[correct:] = (labels[correct:] + 1) % CLASSES
    return TensorDataset(images_for(predicted, seed), labels)


def loader(dataset: TensorDataset, batch_size: int = 4) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size)


def frozen_sgd(parameters):
    """SGD at learning rate 0: the weights stay the chosen ones, so every logged number is computable."""
    return torch.optim.SGD(parameters, lr=0.0)


def trainer(**options) -> L.Trainer:
    settings = dict(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    return L.Trainer(**(settings | options))


def expected(model: nn.Module, dataset: TensorDataset, label_smoothing: float = 0.0) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over the whole dataset, computed directly."""
    images, labels = dataset.tensors
    with torch.no_grad():
        logits = model(images)
    loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing).item()
    return loss, (logits.argmax(-1) == labels).double().mean().item()


def top5(model: nn.Module, dataset: TensorDataset) -> float:
    images, labels = dataset.tensors
    with torch.no_grad():
        best = model(images).topk(5, dim=-1).indices
    return (best == labels[:, None]).any(-1).double().mean().item()


# --- the hyperparameters and options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ("text", True), (3, True), (0.5, True), (False, True), (None, True), ([1, "a", None], True),
        ((1, (2.0, [3])), True), ({"a": 1, "b": {"c": [None]}}, True), ({1: 2}, False), ({"a": nn.ReLU()}, False),
        ([1, nn.ReLU()], False), ((object(),), False), (nn.ReLU(), False), (frozen_sgd, False),
    ],
)  # fmt: skip
def test_only_plain_data_counts_as_a_checkpointable_hyperparameter(value, plain):
    assert _is_plain_data(value) is plain


def test_only_the_plain_hyperparameters_are_kept():
    hparams = {"num_classes": 7, "backbone": Linear(), "optimizer": frozen_sgd, "sizes": [1, 2], "none": None}
    _keep_plain_data(hparams)
    assert hparams == {"num_classes": 7, "sizes": [1, 2], "none": None}


@pytest.mark.skipif(
    "MUTANT_UNDER_TEST" in os.environ,
    reason="mutmut's trampoline renames __init__, so Lightning's save_hyperparameters finds no frame to read",
)
def test_the_checkpoint_keeps_exactly_the_plain_hyperparameters():
    module = ImageClassifier(
        Linear(), num_classes=7, optimizer=frozen_sgd, scheduler_interval="step", label_smoothing=0.25,
        batch_mixing=BatchMixing(mixup_alpha=0.2),
    )  # fmt: skip
    assert dict(module.hparams) == {
        "num_classes": 7, "scheduler": None, "scheduler_interval": "step", "label_smoothing": 0.25,
    }  # fmt: skip
    assert module.optimizer_factory is frozen_sgd and module.scheduler_factory is None
    assert module.scheduler_interval == "step" and module.label_smoothing == 0.25 and module.num_classes == 7
    assert module.batch_mixing.mixup_alpha == 0.2


@pytest.mark.skipif("MUTANT_UNDER_TEST" in os.environ, reason="save_hyperparameters sees no frame under mutmut")
def test_saving_the_hyperparameters_does_not_warn_about_the_backbone_module():
    """Lightning warns that an nn.Module argument is saved twice; the module drops it, so the warning is noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ImageClassifier(Linear())


@pytest.mark.parametrize("smoothing", [1.0, 1.5, -0.1])
def test_label_smoothing_outside_zero_to_one_is_refused_with_the_range(smoothing):
    with pytest.raises(ConfigError) as error:
        ImageClassifier(Linear(), label_smoothing=smoothing)
    assert str(error.value) == (
        f"ImageClassifier: label_smoothing = {smoothing!r} is outside the allowed range [0, 1)."
    )


@pytest.mark.parametrize("smoothing", [0.0, 0.999])
def test_label_smoothing_at_the_edges_of_the_range_is_accepted(smoothing):
    assert ImageClassifier(Linear(), label_smoothing=smoothing).label_smoothing == smoothing


def test_an_unknown_scheduler_interval_is_refused_with_the_choices():
    with pytest.raises(ConfigError) as error:
        ImageClassifier(Linear(), scheduler_interval="batch")
    assert str(error.value) == "ImageClassifier: scheduler_interval = 'batch' is not one of 'epoch', 'step'."


def test_the_defaults_are_the_reference_recipe():
    module = ImageClassifier(Linear())
    assert module.num_classes == 10 and module.label_smoothing == 0.0 and module.scheduler_interval == "epoch"
    assert module.optimizer_factory is None and module.scheduler_factory is None and module.batch_mixing is None
    assert module.test_prefix == "test"


def test_top5_accuracy_is_reported_only_with_more_than_five_classes():
    assert set(ImageClassifier(Linear(), num_classes=5).metrics) == {"acc"}
    module = ImageClassifier(Linear(), num_classes=6)
    assert set(module.metrics) == {"acc", "acc_top5"}
    assert set(module.train_metrics) == {"train/acc", "train/acc_top5"}
    assert set(module.val_metrics) == {"val/acc", "val/acc_top5"}
    assert set(module.test_metrics[0]) == {"acc", "acc_top5"}


@pytest.mark.parametrize("num_classes", [5, 8])
def test_a_backbone_with_another_number_of_outputs_than_classes_is_refused_at_its_first_step(num_classes):
    """The accuracies count against `num_classes` (top-1 and, above 5 classes, top-5): logits of 10 classes are
    refused for 5 or 8, where a metric that inferred the count from the logits would take them."""
    module = ImageClassifier(Linear(), num_classes=num_classes, optimizer=frozen_sgd)
    with pytest.raises(ValueError, match=r"preds.shape\[1\]` should be equal to number of classes"):
        trainer(max_steps=1).fit(module, loader(labelled(4, 0)))


def test_accuracies_are_over_images_and_top5_counts_the_five_highest():
    """Micro accuracy (over images, not averaged per class) on imbalanced labels, where the two differ."""
    module = ImageClassifier(Linear(), num_classes=CLASSES)
    logits = torch.arange(CLASSES, dtype=torch.float).repeat(4, 1)  # ranks: 9 first, then 8, 7, 6, 5
    labels = torch.tensor([9, 9, 9, 4])  # top-1: 3 of 4 (per class: 1 and 0); top-5 3 of 4; top-6 4 of 4
    module.metrics.update(logits, labels)
    results = module.metrics.compute()
    assert results["acc"].item() == pytest.approx(0.75) and results["acc_top5"].item() == pytest.approx(0.75)
    module.metrics.reset()
    module.metrics.update(logits, torch.tensor([9, 5, 5, 0]))
    assert module.metrics.compute()["acc_top5"].item() == pytest.approx(0.75)


def test_the_forward_and_the_step_are_the_backbones_logits_and_the_cross_entropy():
    torch.manual_seed(0)
    backbone = Linear(torch.randn(CLASSES, CLASSES))
    module = ImageClassifier(backbone, label_smoothing=0.2)
    images, labels = torch.rand(6, 1, 2, 5), torch.tensor([0, 3, 3, 9, 1, 2])
    assert torch.equal(module(images), backbone(images))
    loss, logits, hard = module.model_step((images, labels))
    assert torch.equal(logits, backbone(images)) and torch.equal(hard, labels)
    assert loss.item() == pytest.approx(F.cross_entropy(backbone(images), labels, label_smoothing=0.2).item())
    soft = torch.softmax(torch.randn(6, CLASSES), dim=-1)
    loss, _, hard = module.model_step((images, labels), soft)
    assert torch.equal(hard, labels)
    assert loss.item() == pytest.approx(F.cross_entropy(backbone(images), soft, label_smoothing=0.2).item())


# --- the logged numbers of a real fit -------------------------------------------------------------------------


class Record(L.Callback):
    """The metrics at the end of each validation epoch and each test batch's returned outputs."""

    def __init__(self) -> None:
        self.validation: list[dict[str, float]] = []
        self.test_outputs: list[dict[str, torch.Tensor]] = []

    def on_validation_end(self, trainer, pl_module) -> None:  # after the module's epoch-end logging
        if not trainer.sanity_checking:
            self.validation.append({k: v.item() for k, v in trainer.callback_metrics.items()})

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.test_outputs.append(outputs)


def test_a_fit_logs_the_training_and_validation_loss_and_accuracy_of_its_weights():
    train, val = labelled(9, 3, seed=1), labelled(5, 3, seed=2)  # 12 training images in 3 batches; 8 validation
    module = ImageClassifier(Linear(), optimizer=frozen_sgd, label_smoothing=0.1)
    run = trainer()
    run.fit(module, loader(train), loader(val))
    metrics = {k: v.item() for k, v in run.callback_metrics.items()}
    train_loss, train_acc = expected(module.backbone, train, 0.1)
    val_loss, val_acc = expected(module.backbone, val, 0.1)
    assert metrics["train/loss_epoch"] == pytest.approx(train_loss, rel=1e-6)
    assert metrics["train/acc"] == pytest.approx(train_acc) and train_acc == pytest.approx(0.75)
    assert metrics["val/loss"] == pytest.approx(val_loss, rel=1e-6)
    assert metrics["val/acc"] == pytest.approx(val_acc) and val_acc == pytest.approx(5 / 8)
    assert metrics["val/acc_best"] == pytest.approx(5 / 8)
    assert metrics["train/acc_top5"] == pytest.approx(top5(module.backbone, train))
    assert metrics["val/acc_top5"] == pytest.approx(top5(module.backbone, val))
    # the training accuracy per epoch only: no train/acc_step
    assert set(metrics) == {
        "train/loss",
        "train/loss_step",
        "train/loss_epoch",
        "train/acc",
        "train/acc_top5",
        "val/loss",
        "val/acc",
        "val/acc_top5",
        "val/acc_best",
    }


def test_the_progress_bar_shows_the_losses_and_the_validation_accuracies():
    module = ImageClassifier(Linear(), optimizer=frozen_sgd)
    run = trainer()
    run.fit(module, loader(labelled(4, 0)), loader(labelled(4, 4)))
    shown = {"train/loss_step", "train/loss_epoch", "val/loss", "val/acc", "val/acc_top5"}
    assert set(run.progress_bar_metrics) == shown


class RecordedDDP(DDPStrategy):
    """Lightning's DDP strategy in one process (a real gloo group of size 1) that keeps what it reduces across
    ranks: the 2-process runs are subprocess tests, which mutation testing cannot see."""

    def __init__(self) -> None:
        super().__init__(process_group_backend="gloo")
        self.averaged: list[float] = []

    def reduce(self, tensor, group=None, reduce_op="mean"):
        if reduce_op == "mean":  # the logged metrics (the loaders' lengths are summed)
            self.averaged.append(float(tensor))
        return super().reduce(tensor, group=group, reduce_op=reduce_op)


@pytest.fixture
def restored_environment():
    """DDP setup writes MASTER_PORT, WORLD_SIZE and the ranks into os.environ; later tests must not inherit them."""
    saved = dict(os.environ)
    yield
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    os.environ.clear()
    os.environ.update(saved)


def test_the_validation_and_test_numbers_are_reduced_across_ranks(restored_environment):
    """Under DDP each rank sees part of the data: the logged loss (summed over images, then divided by the
    image count), the best accuracy and the test loss must go through the strategy's reduction."""
    strategy = RecordedDDP()
    module = ImageClassifier(Linear(), optimizer=frozen_sgd)
    val = labelled(5, 3, seed=2)
    run = trainer(strategy=strategy, devices=1)
    run.fit(module, loader(labelled(4, 0)), loader(val))
    loss, accuracy = expected(module.backbone, val)
    assert strategy.averaged == pytest.approx([loss * 8, 8, accuracy, 1], rel=1e-6)
    run.test(module, loader(val), verbose=False)
    assert strategy.averaged[4:] == pytest.approx([loss * 8, 8], rel=1e-6)


class Flip(L.Callback):
    """Before validation epoch `at`, make the backbone predict the next class: its accuracy drops to 0."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.current_epoch == self.at:
            with torch.no_grad():
                pl_module.backbone.head.weight.copy_(torch.eye(CLASSES).roll(1, dims=0))


def test_the_best_validation_accuracy_is_the_running_maximum_and_ignores_the_sanity_check():
    """The sanity check sees only the first batch (all right: 1.0); the epochs score 0.5, then 0 (flipped)."""
    val = labelled(4, 4, seed=3)
    module = ImageClassifier(Linear(), optimizer=frozen_sgd)
    record = Record()
    fit = trainer(max_epochs=2, num_sanity_val_steps=1, callbacks=[Flip(at=1), record])
    fit.fit(module, loader(labelled(4, 0)), loader(val))
    assert [epoch["val/acc"] for epoch in record.validation] == pytest.approx([0.5, 0.0])
    assert [epoch["val/acc_best"] for epoch in record.validation] == pytest.approx([0.5, 0.5])


def test_each_test_set_gets_its_own_accuracy_under_the_chosen_prefix():
    """Loader 0 is all right, loader 1 half right: pooled predictions would give both 0.75."""
    right, half = labelled(8, 0, seed=4), labelled(4, 4, seed=5)
    module = ImageClassifier(Linear())
    record = Record()
    run = trainer(callbacks=[record])
    (first, second) = run.test(module, [loader(right), loader(half)], verbose=False)
    assert first["test/acc/dataloader_idx_0"] == pytest.approx(1.0)
    assert second["test/acc/dataloader_idx_1"] == pytest.approx(0.5)
    assert first["test/loss/dataloader_idx_0"] == pytest.approx(expected(module.backbone, right)[0], rel=1e-6)
    assert second["test/loss/dataloader_idx_1"] == pytest.approx(expected(module.backbone, half)[0], rel=1e-6)
    with module.testing_as("test_last"):
        (only,) = run.test(module, loader(half), verbose=False)
    assert only["test_last/acc"] == pytest.approx(0.5) and "test_last/acc_top5" in only
    assert module.test_prefix == "test"
    images, labels = half.tensors
    outputs = record.test_outputs[-2:]  # the last test's two batches
    assert torch.equal(torch.cat([o["predictions"] for o in outputs]), module.backbone(images).argmax(-1))
    assert torch.equal(torch.cat([o["labels"] for o in outputs]), labels)


class Streamed(IterableDataset):
    """A test set read as a stream: its loader has no length."""

    def __init__(self, dataset: TensorDataset) -> None:
        self.dataset = dataset

    def __iter__(self):
        return iter(self.dataset)


def test_a_single_test_loader_without_a_length_gets_one_collection():
    half = labelled(4, 4, seed=5)
    module = ImageClassifier(Linear())
    (only,) = trainer().test(module, DataLoader(Streamed(half), batch_size=4), verbose=False)
    assert only["test/acc"] == pytest.approx(0.5) and len(module.test_metrics) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_test_metrics_are_made_on_the_modules_device():
    (only,) = trainer(accelerator="gpu", devices=1).test(
        ImageClassifier(Linear()), loader(labelled(6, 2)), verbose=False
    )
    assert only["test/acc"] == pytest.approx(0.75)


def test_the_test_prefix_is_restored_when_the_block_raises():
    module = ImageClassifier(Linear())
    with pytest.raises(KeyError), module.testing_as("test_last"):
        assert module.test_prefix == "test_last"
        raise KeyError("inside")
    assert module.test_prefix == "test"


def test_predict_returns_the_class_probabilities():
    torch.manual_seed(1)
    module = ImageClassifier(Linear(torch.randn(CLASSES, CLASSES)))
    data = labelled(3, 3, seed=6)
    batches = trainer().predict(module, loader(data))
    with torch.no_grad():
        assert torch.allclose(torch.cat(batches), module.backbone(data.tensors[0]).softmax(-1), atol=1e-7)


# --- the NaN stop ---------------------------------------------------------------------------------------------


class NaNAfter(Linear):
    """The identity backbone whose logits turn NaN from its `after`-th training call on."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.calls = after, 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += self.training
        logits = super().forward(images)
        return logits * float("nan") if self.training and self.calls > self.after else logits


def test_a_non_finite_loss_stops_the_fit_at_its_step_with_the_diagnosis():
    module = ImageClassifier(NaNAfter(after=2), optimizer=frozen_sgd)
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at step 2; stopping"):
        trainer(max_epochs=3).fit(module, loader(labelled(12, 0)))
    assert module.global_step == 2


def test_a_non_finite_input_is_named_as_the_cause():
    data = labelled(8, 0)
    data.tensors[0][5, 0, 1, 2] = float("nan")  # in the second batch
    module = ImageClassifier(Linear(), optimizer=frozen_sgd)
    with pytest.raises(NonFiniteLossError, match=r"at step 1;.*\nThe input batch holds NaN/Inf"):
        trainer().fit(module, loader(data))


@pytest.mark.parametrize(("value", "stops"), [(1.5, False), (float("nan"), True), (float("inf"), True)])
def test_the_stop_without_a_trainer_reads_the_loss_alone(value, stops):
    module = ImageClassifier(Linear())
    if stops:
        with pytest.raises(NonFiniteLossError, match="at step 0"):
            module.stop_on_non_finite(torch.tensor(value), torch.rand(2, 1, 2, 5))
    else:
        module.stop_on_non_finite(torch.tensor(value), torch.rand(2, 1, 2, 5))


class Ranks:
    """A stand-in for a DDP strategy's reduction (the real 2-process run is test_reliability's subprocess test;
    this one is in-process so mutation testing sees it): `others_bad` is what the other rank reports."""

    def __init__(self, others_bad: bool) -> None:
        self.others_bad, self.calls = others_bad, []

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        self.calls.append((decision, all))
        return (decision and self.others_bad) if all else (decision or self.others_bad)


@pytest.mark.parametrize(("world_size", "others_bad", "stops"), [(2, True, True), (2, False, False), (1, True, False)])
def test_every_rank_stops_when_any_rank_has_a_non_finite_loss(world_size, others_bad, stops):
    module = ImageClassifier(Linear())
    ranks = Ranks(others_bad)
    # a stand-in trainer: a real one at world size 2 needs two processes (see Ranks' docstring)
    module._trainer = SimpleNamespace(world_size=world_size, strategy=ranks, global_step=7)
    if stops:
        with pytest.raises(NonFiniteLossError, match=r"loss is 0\.5 at step 7"):
            module.stop_on_non_finite(torch.tensor(0.5), torch.rand(2, 1, 2, 5))
    else:
        module.stop_on_non_finite(torch.tensor(0.5), torch.rand(2, 1, 2, 5))
    assert ranks.calls == ([(False, False)] if world_size > 1 else [])


# --- setup, checkpoint hooks, parameter counts ----------------------------------------------------------------


class Batches(L.LightningDataModule):
    """A datamodule without the image attributes of lit_vir's."""

    def train_dataloader(self) -> DataLoader:
        return loader(labelled(4, 0))


class Images(Batches):
    image_size, in_channels = 6, 3


@pytest.mark.parametrize("datamodule", [None, Batches(), Images()])
def test_setup_gives_the_summary_an_input_of_the_datamodules_image_shape(datamodule):
    module = ImageClassifier(Linear(), optimizer=frozen_sgd)
    module.setup("fit")  # no trainer: nothing to read
    assert module.example_input_array is None
    if datamodule is None:
        trainer(max_steps=1).fit(module, loader(labelled(4, 0)))
    else:
        trainer(max_steps=1).fit(module, datamodule=datamodule)  # a real fit calls setup("fit")
    if isinstance(datamodule, Images):
        assert torch.equal(module.example_input_array, torch.zeros(1, 3, 6, 6))
    else:
        assert module.example_input_array is None


def draws() -> tuple[float, float]:
    return torch.rand(()).item(), random.random()


@pytest.mark.parametrize(
    ("stage", "restored"),
    [(TrainerFn.FITTING, True), (TrainerFn.VALIDATING, False), (TrainerFn.TESTING, False), (None, False)],
)
def test_a_resumed_fit_continues_the_random_streams_where_the_checkpoint_left_them(stage, restored):
    module = ImageClassifier(Linear())
    torch.manual_seed(3)
    random.seed(3)
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    following = draws()
    if stage is not None:  # a real Trainer in the state its fit, validate or test call puts it in
        module.trainer = trainer()
        module.trainer.state.fn = stage
    module.on_load_checkpoint(checkpoint)
    assert (draws() == following) is restored
    module.on_load_checkpoint({})  # an older checkpoint without the streams loads all the same


class Metrics(Logger):
    """A logger that keeps what it is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[dict[str, float], int | None]] = []

    name, version = "metrics", 0

    def log_metrics(self, metrics, step=None) -> None:
        self.sent.append((dict(metrics), step))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


def test_fit_start_logs_the_parameter_counts_to_every_logger():
    backbone = Linear()
    backbone.frozen = nn.Linear(3, 2)  # 8 weights that receive no gradient
    backbone.frozen.requires_grad_(False)
    module = ImageClassifier(backbone, optimizer=frozen_sgd)
    loggers = [Metrics(), Metrics()]
    run = trainer(logger=loggers, max_steps=1, limit_val_batches=0, log_every_n_steps=100)
    run.fit(module, loader(labelled(4, 0)))
    for logger in loggers:
        assert logger.sent[0] == ({"params/trainable": 110 + 8, "params/frozen": 8, "params/fixed": 0}, 0)


# --- the optimiser and the schedule ---------------------------------------------------------------------------


def test_the_default_optimiser_is_adam_at_the_reference_rate_on_the_weight_decay_groups():
    module = ImageClassifier(Linear())
    optimizer = module.configure_optimizers()
    assert type(optimizer) is torch.optim.Adam and REFERENCE_LEARNING_RATE == 3e-4
    reference = parameter_groups(module.backbone)
    assert [group["lr"] for group in optimizer.param_groups] == [3e-4] * len(reference)
    assert [group["params"] for group in optimizer.param_groups] == [group["params"] for group in reference]
    assert [group["name"] for group in optimizer.param_groups] == ["decay", "no_decay"]
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.0, 0.0]  # Adam's default, then the rule


def test_a_given_optimiser_and_scheduler_are_built_on_the_groups_and_stepped_at_the_interval():
    seen = []

    def optimizer(groups):
        seen.append(groups)
        return torch.optim.SGD(groups, lr=0.1)

    module = ImageClassifier(
        Linear(), optimizer=optimizer, scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 2),
        scheduler_interval="step",
    )  # fmt: skip
    configured = module.configure_optimizers()
    assert [[id(p) for p in g["params"]] for g in seen[0]] == [
        [id(p) for p in g["params"]] for g in parameter_groups(module.backbone)
    ]
    assert set(configured) == {"optimizer", "lr_scheduler"}
    assert type(configured["optimizer"]) is torch.optim.SGD
    scheduler = configured["lr_scheduler"]
    assert set(scheduler) == {"scheduler", "interval"} and scheduler["interval"] == "step"
    assert type(scheduler["scheduler"]) is torch.optim.lr_scheduler.StepLR
    assert scheduler["scheduler"].optimizer is configured["optimizer"]


def spanned(scheduler_options: dict, interval: str, **trainer_options) -> WarmupCosineLR:
    """The WarmupCosineLR of a real fit of 3 batches per epoch, as the fit configured it."""
    module = ImageClassifier(
        Linear(), optimizer=frozen_sgd, scheduler=lambda opt: WarmupCosineLR(opt, **scheduler_options),
        scheduler_interval=interval,
    )  # fmt: skip
    run = trainer(limit_val_batches=0, **trainer_options)
    run.fit(module, loader(labelled(12, 0)))
    return run.lr_scheduler_configs[0].scheduler


def test_a_run_long_schedule_spans_the_epochs_or_their_steps():
    assert spanned({"warmup": 1}, "epoch", max_epochs=4).total == 4
    assert spanned({"warmup": 1}, "step", max_epochs=2).total == 6
    assert spanned({"warmup": 1, "total": 9}, "epoch", max_epochs=4).total == 9  # a given length is kept


@pytest.mark.parametrize("max_epochs", [-1, None])
def test_a_time_budgeted_schedule_spans_the_budget(max_epochs):
    scheduler = spanned({"warmup": 1}, "step", max_epochs=max_epochs, max_steps=3, max_time={"seconds": 40})
    seconds, elapsed = scheduler.budget
    assert scheduler.total is None and seconds == pytest.approx(40, abs=0.5)
    assert 0 < elapsed() < 40  # a wall clock started by the scheduler: no reference value, only that it runs


def test_a_time_budget_with_an_epoch_limit_spans_the_epochs():
    scheduler = spanned({"warmup": 1}, "epoch", max_epochs=2, max_time={"seconds": 40})
    assert scheduler.total == 2 and scheduler.budget is None
