"""The recipe in real runs: the EMA is what validation, checkpoints and tests see and resumes exactly; a time
budget ends a run with checkpoints, both tests and a compare row; FLOPs match a hand count; any timm model trains."""

from __future__ import annotations

import csv

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_vir.cli import main
from lit_vir.data import DigitsDataModule, MNISTDataModule
from lit_vir.models import ViR, vit_base
from lit_vir.models.counting import training_flops
from lit_vir.training import ImageClassifier
from lit_vir.training.callbacks.ema import ExponentialMovingAverage
from lit_vir.training.checkpoints import load_classifier, read_checkpoint
from tests.conftest import CONFIGS, TINY_VIR
from tests.fakedata import write_mnist

DECAY = 0.8


class RecordWeights(L.Callback):
    """Raw weights after every optimiser step, and the weights the model holds when validation runs."""

    def __init__(self) -> None:
        self.raw: list[dict[str, torch.Tensor]] = []
        self.validated: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.raw.append({name: p.detach().clone() for name, p in pl_module.named_parameters()})

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0 and not trainer.sanity_checking:
            self.validated.append({name: p.detach().clone() for name, p in pl_module.named_parameters()})


def expected_average(raw: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """avg_1 = w_1, avg_k = d·avg_{k−1} + (1 − d)·w_k with the warmed-up d = min(DECAY, k/(9 + k))."""
    average = {name: value.clone() for name, value in raw[0].items()}
    for k, weights in enumerate(raw[1:], start=2):
        decay = min(DECAY, k / (9 + k))
        average = {name: decay * average[name] + (1 - decay) * weights[name] for name in average}
    return average


@pytest.fixture
def ema_run(tmp_path):
    torch.manual_seed(0)
    backbone = ViR(10, 8, 1, patch_size=2, embed_dim=8, num_nodes=30, jump_size=4, mlp_dim=16, token_order="shuffled")
    module = ImageClassifier(backbone, optimizer=lambda groups: torch.optim.Adam(groups, lr=1e-2))
    record = RecordWeights()
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=5,
        limit_val_batches=2,
        limit_test_batches=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
        callbacks=[ExponentialMovingAverage(decay=DECAY), record],
    )
    data = DigitsDataModule(batch_size=32)
    fixed = {name: buffer.clone() for name, buffer in backbone.named_buffers()}
    trainer.fit(module, datamodule=data)
    return trainer, module, record, data, fixed


def test_validation_sees_the_average_not_the_raw_weights(ema_run):
    _, _, record, _, _ = ema_run
    (seen,) = record.validated
    expected = expected_average(record.raw)
    assert any(not torch.equal(seen[name], record.raw[-1][name]) for name in seen)
    for name in seen:
        assert torch.allclose(seen[name], expected[name], atol=1e-6), name


def test_checkpoints_hold_the_average_and_the_raw_weights_apart(ema_run):
    trainer, _, record, _, _ = ema_run
    checkpoint = read_checkpoint(trainer.checkpoint_callback.best_model_path)
    expected = expected_average(record.raw)
    for name, value in expected.items():
        assert torch.allclose(checkpoint["state_dict"][name], value, atol=1e-6), name
        assert torch.equal(checkpoint["current_model_state"][name], record.raw[-1][name]), name


def test_testing_the_best_checkpoint_after_fit_tests_the_average(ema_run):
    trainer, module, record, data, _ = ema_run
    trainer.test(module, datamodule=data, ckpt_path="best", verbose=False)
    expected = expected_average(record.raw)
    for name, parameter in module.named_parameters():
        assert torch.allclose(parameter, expected[name], atol=1e-6), name


def test_fixed_buffers_are_not_averaged(ema_run):
    _, module, _, _, fixed = ema_run
    for name, buffer in module.backbone.named_buffers():
        assert torch.equal(buffer, fixed[name]), name  # W, V exactly; the token order still a permutation


def test_ema_run_resumes_exactly(tmp_path, monkeypatch):
    ema = ["--trainer.callbacks+=lit_vir.training.callbacks.ema.ExponentialMovingAverage"]
    common = [
        "-c",
        str(CONFIGS / "vir.yaml"),
        *TINY_VIR,
        "--data.init_args.download",
        "false",
        "--data.init_args.batch_size",
        "50",
        "--trainer.accelerator",
        "cpu",
        "--trainer.deterministic",
        "true",
        "--trainer.enable_progress_bar",
        "false",
        *ema,
    ]

    def fit(folder, *args):
        write_mnist(folder / "data", train=300, test=50)
        monkeypatch.chdir(folder)
        main(["fit", *common, *args])
        return read_checkpoint(folder / "logs" / "vir-mnist" / "version_0" / "checkpoints" / "last.ckpt")

    straight = fit(tmp_path / "straight", "--trainer.max_epochs", "2")
    fit(tmp_path / "resumed", "--trainer.max_epochs", "1")
    resumed = fit(tmp_path / "resumed", "--trainer.max_epochs", "2", "--ckpt_path", "last")
    for key in ("state_dict", "current_model_state"):
        assert straight[key].keys() == resumed[key].keys()
        for name in straight[key]:
            assert torch.equal(straight[key][name], resumed[key][name]), (key, name)


def test_training_flops_of_vit_base_1_equal_a_hand_count():
    tokens, width, hidden, patches = 65, 768, 3072, 64  # 32 px, patch 4: 64 patches + the class token
    linear = 2 * tokens * (width * 3 * width + width * width + 2 * width * hidden)  # qkv, proj, fc1, fc2
    attention = 2 * 2 * tokens * tokens * width  # q·kᵀ and softmax·V over 12 heads of 64
    embedding = 2 * patches * (4 * 4 * 3) * width
    head = 2 * width * 10
    # backward: every product twice more (input and weight gradients), except the image's gradient
    hand = 3 * (linear + attention + head) + 2 * embedding
    counted = training_flops(
        vit_base(depth=1, num_classes=10, image_size=32, in_channels=3), torch.zeros(2, 3, 32, 32), 10
    )
    assert counted / 2 == pytest.approx(hand, rel=0.01)


def test_training_flops_count_the_reservoir_recurrence():
    model = ViR(10, 28, 1, num_nodes=100, jump_size=7)
    without = training_flops(ViR(10, 28, 1, num_nodes=100, jump_size=7, memoryless=True), torch.zeros(2, 1, 28, 28), 10)
    # the memoryless reservoir skips the 48 products h_{t−1}·W (2·B·N² each) of the 49-token recurrence
    assert training_flops(model, torch.zeros(2, 1, 28, 28), 10) - without == 48 * 2 * 2 * 100 * 100


def logged(run, tag: str) -> list[float]:
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return [event.value for event in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


def test_a_time_budget_ends_the_run_with_checkpoints_both_tests_flops_and_a_compare_row(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            "-c",
            str(CONFIGS / "quickstart.yaml"),
            "-c",
            str(CONFIGS / "recipe" / "strong.yaml"),
            "-c",
            str(CONFIGS / "recipe" / "budget.yaml"),
            "--model.init_args.scheduler.init_args.warmup",
            "3",
            "--trainer.max_time",
            "00:00:00:06",
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    run = tmp_path / "logs" / "vir-digits" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").exists() and list(run.glob("checkpoints/epoch*.ckpt"))
    assert logged(run, "test/acc") and logged(run, "test_last/acc")
    steps = read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"]
    assert steps > 0  # how many fit in the 6 s budget depends on the machine; the FLOPs below are per step
    per_image, total = logged(run, "perf/train_flops_per_image")[-1], logged(run, "perf/train_flops_total")[-1]
    data = DigitsDataModule(batch_size=64)
    data.setup("fit")
    size, batches = len(data.train_set), len(data.train_dataloader())
    seen = (steps // batches) * size + (steps % batches) * 64  # whole epochs, then full batches of the last one
    assert total == pytest.approx(per_image * seen, rel=1e-6)  # TensorBoard keeps float32
    schedule = read_checkpoint(run / "checkpoints" / "last.ckpt")["lr_schedulers"][0]
    assert schedule["_last_lr"][0] < 0.2 * schedule["base_lrs"][0]  # the cosine ran over the time budget
    main(["compare", "logs/*/version_*", "--output", "comparison"])
    with open(tmp_path / "comparison" / "compare.csv") as stream:
        (row,) = list(csv.DictReader(stream))
    assert row["budget"] == "6s" and row["recipe"] == "strong"
    assert float(row["train_flops"]) == pytest.approx(total)


def test_a_timm_model_trains_through_the_cli_and_its_checkpoint_loads_weights_only(tmp_path, monkeypatch):
    write_mnist(tmp_path / "data", train=120, test=40)
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            "-c",
            str(CONFIGS / "vir.yaml"),
            "-c",
            str(CONFIGS / "model" / "timm.yaml"),
            "--model.backbone.init_args.name",
            "resnet18",
            "--data.init_args.download",
            "false",
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.limit_test_batches",
            "1",
            "--trainer.enable_progress_bar",
            "false",
            "--test_after_fit",
            "true",
            "--data.init_args.batch_size",
            "20",
        ]
    )
    run = tmp_path / "logs" / "timmmodel-mnist" / "version_0"
    classifier = load_classifier(run / "checkpoints" / "last.ckpt").eval()
    assert classifier.backbone.name == "resnet18"
    images = torch.rand(4, 1, 28, 28)
    again = load_classifier(run / "checkpoints" / "last.ckpt").eval()
    assert torch.equal(classifier(images), again(images))
    mnist = MNISTDataModule(root=str(tmp_path / "data"), download=False, batch_size=20)
    mnist.prepare_data()
    mnist.setup("test")
    batch_images, labels = next(iter(mnist.test_dataloader()))
    with torch.no_grad():
        accuracy = (classifier(batch_images).argmax(dim=-1) == labels).double().mean().item()
    assert accuracy == pytest.approx(logged(run, "test_last/acc")[-1], abs=1e-6)


def test_the_emas_options_reach_lightnings_averaging():
    """Which steps and epochs update the average (Lightning's rule: from the starting step on, every n-th step; every
    epoch from the starting epoch on), and the decay the warm-up ends at: 0.999 by default (after a million updates
    the average moves 0.001 of the way to the weights)."""
    by_step = ExponentialMovingAverage(update_every_n_steps=3, update_starting_at_step=4)
    assert [step for step in range(12) if by_step.should_update(step_idx=step)] == [6, 9]
    by_epoch = ExponentialMovingAverage(update_every_n_steps=0, update_starting_at_epoch=2)
    assert [epoch for epoch in range(4) if by_epoch.should_update(step_idx=epoch, epoch_idx=epoch)] == [2, 3]
    assert [step for step in range(4) if ExponentialMovingAverage().should_update(step_idx=step)] == [0, 1, 2, 3]
    update = ExponentialMovingAverage()._kwargs["avg_fn"]  # what the AveragedModel built at setup calls
    moved = update(torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64), torch.tensor(1_000_000))
    assert moved.item() == pytest.approx(0.001, rel=1e-9)
