"""The closed-form ridge readout: the normal equations against numpy's least squares, the features against a plain
float64 loop of the reservoir, the memory refusal, and a real `lit-vir fit` run whose choice of λ, weights and
accuracies are recomputed here from the data with numpy and read back by `lit-vir compare`."""

from __future__ import annotations

import csv
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from sklearn.datasets import load_digits
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from lit_vir.checks import ConfigError
from lit_vir.cli import main
from lit_vir.commands.compare import main as compare
from lit_vir.config import build_from_config
from lit_vir.models import ViR
from lit_vir.models.ridge import NormalEquations, feature_width, normal_equations_bytes, reservoir_features
from lit_vir.training import RidgeClassifier
from lit_vir.training.checkpoints import load_classifier, read_checkpoint
from lit_vir.training.ridge import DEFAULT_RIDGES, available_memory_bytes
from tests.conftest import CONFIGS, QUICK_TRAINER, TINY_VIR

RIDGE = CONFIGS / "readout" / "ridge.yaml"
DIGITS = ["-c", str(CONFIGS / "vir.yaml"), "-c", str(CONFIGS / "data" / "digits.yaml"), *TINY_VIR]
PATCH_2 = ["--model.backbone.init_args.patch_size", "2"]  # 16 tokens of an 8×8 digit


def reference_ridge(features: np.ndarray, targets: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge with an unpenalised intercept as one least-squares problem: rows [f_n, 1] → y_n, plus F rows
    [√β·e_i, 0] → 0 that penalise each weight (and not the intercept), solved by numpy.linalg.lstsq."""
    count, width = features.shape
    design = np.block([[features, np.ones((count, 1))], [np.sqrt(beta) * np.eye(width), np.zeros((width, 1))]])
    target = np.vstack([targets, np.zeros((width, targets.shape[1]))])
    solution = np.linalg.lstsq(design, target, rcond=None)[0]
    return solution[:width], solution[width]


def relative_penalty(features: np.ndarray, ridge: float) -> float:
    """β = λ·tr(Σ)/F, Σ the centred scatter matrix of the features."""
    return ridge * ((features - features.mean(axis=0)) ** 2).sum() / features.shape[1]


def one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    return np.eye(classes)[labels]


def small_problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    features = generator.normal(size=(300, 7)) * [1, 2, 5, 0.1, 1, 3, 1] + [0, 1, -2, 4, 0, 0, 10]
    labels = (features[:, 0] + 0.3 * features[:, 1] > 0).astype(int) + (features[:, 2] > -2)
    return features, labels


@pytest.mark.parametrize("ridge", [1e-6, 1e-2, 3.0])
def test_normal_equations_solve_ridge_as_numpy_lstsq(ridge):
    features, labels = small_problem()
    equations = NormalEquations(7, 3)
    for rows in (slice(0, 50), slice(50, 51), slice(51, 300)):  # accumulated over unequal batches
        equations.add(torch.from_numpy(features[rows]), torch.from_numpy(labels[rows]))
    assert equations.count == 300
    beta = relative_penalty(features, ridge)
    assert equations.penalty(ridge) == pytest.approx(beta, rel=1e-12)
    weight, bias = equations.solve(ridge)
    expected_weight, expected_bias = reference_ridge(features, one_hot(labels, 3), beta)
    np.testing.assert_allclose(weight.numpy(), expected_weight, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(bias.numpy(), expected_bias, rtol=1e-9, atol=1e-11)


def test_a_vanishing_ridge_is_ordinary_least_squares():
    features, labels = small_problem(1)
    equations = NormalEquations(7, 3)
    equations.add(torch.from_numpy(features), torch.from_numpy(labels))
    weight, bias = equations.solve(1e-13)
    design = np.hstack([features, np.ones((300, 1))])
    solution = np.linalg.lstsq(design, one_hot(labels, 3), rcond=None)[0]
    np.testing.assert_allclose(weight.numpy(), solution[:7], atol=1e-8)
    np.testing.assert_allclose(bias.numpy(), solution[7], atol=1e-8)


def test_a_relative_ridge_gives_the_same_predictions_at_any_feature_scale():
    features, labels = small_problem(2)
    predictions = []
    for scale in (1.0, 1000.0):
        equations = NormalEquations(7, 3)
        equations.add(torch.from_numpy(scale * features), torch.from_numpy(labels))
        weight, bias = equations.solve(0.1)
        predictions.append(scale * features @ weight.numpy() + bias.numpy())
    np.testing.assert_allclose(predictions[0], predictions[1], rtol=1e-8, atol=1e-10)


def test_a_singular_system_is_refused_with_what_to_do():
    features = np.repeat(small_problem()[0][:, :1], 2, axis=1)  # two equal columns: singular without a ridge
    equations = NormalEquations(2, 3)
    equations.add(torch.from_numpy(features), torch.zeros(300, dtype=torch.int64))
    with pytest.raises(
        ValueError,
        match=r"^the normal equations are not positive definite at ridge λ = 0 \(features that are constant or linear "
        r"combinations of others, with a ridge too small to separate them\): use a larger λ$",
    ):
        equations.solve(0.0)
    with pytest.raises(ValueError, match=r"^no samples were added to the normal equations: nothing to solve$"):
        NormalEquations(2, 3).solve(1.0)


def tiny_vir(**options) -> ViR:
    settings = dict(num_classes=10, image_size=8, in_channels=1, patch_size=2, embed_dim=6, mlp_dim=8)
    return ViR(**{**settings, "num_nodes": 12, "jump_size": 3, "bias_scaling": 0.2, "leak_rate": 0.7, **options})


def reference_states(tokens: np.ndarray, weight: np.ndarray, inputs: np.ndarray, bias, leak: float) -> np.ndarray:
    """h_t = (1 − a)·h_{t−1} + a·tanh(h_{t−1}·W + x_t·V + b), h_0 = 0, one image and one step at a time."""
    states = np.zeros((*tokens.shape[:2], weight.shape[0]))
    for image in range(tokens.shape[0]):
        state = np.zeros(weight.shape[0])
        for step in range(tokens.shape[1]):
            state = (1 - leak) * state + leak * np.tanh(state @ weight + tokens[image, step] @ inputs + bias)
            states[image, step] = state
    return states


@pytest.mark.parametrize("pooling", ["mean", "last", "flatten"])
def test_features_are_tokens_and_states_of_every_core_pooled(pooling):
    model = tiny_vir(depth=2).eval()
    images = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    tokens = model.embed(images).detach().double().numpy()  # (B, T, D)
    bank = model.reservoirs[0]
    columns = [tokens] + [
        reference_states(
            tokens,
            bank.weight[core].double().numpy(),
            bank.input_weight[core].double().numpy(),
            bank.bias[core].double().numpy(),
            0.7,
        )
        for core in range(2)
    ]
    per_token = np.concatenate(columns, axis=-1)  # (B, T, D + 2N)
    expected = {"mean": per_token.mean(axis=1), "last": per_token[:, -1], "flatten": per_token.reshape(3, -1)}
    features = reservoir_features(model, images, pooling)
    assert features.dtype == torch.float64
    np.testing.assert_allclose(features.numpy(), expected[pooling], atol=1e-5)  # the model's states are float32
    assert feature_width(model, pooling) == features.shape[1] == (6 + 2 * 12) * (16 if pooling == "flatten" else 1)


def test_features_without_a_reservoir_are_the_pooled_tokens():
    model = tiny_vir(use_reservoir=False).eval()
    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    expected = model.embed(images).detach().double().mean(dim=1)
    assert torch.allclose(reservoir_features(model, images, "mean"), expected)
    assert feature_width(model, "mean") == 6


def test_float32_features_are_accumulated_in_float64():
    """A model's features arrive in float32: the sums are still float64, [f; 1]ᵀ[f; 1] of the float32 values exactly
    (numpy in float64)."""
    features, labels = small_problem()
    single = features.astype(np.float32)
    equations = NormalEquations(7, 3)
    equations.add(torch.from_numpy(single), torch.from_numpy(labels))
    rows = np.hstack([single.astype(np.float64), np.ones((300, 1))])
    assert equations.gram.dtype == torch.float64
    np.testing.assert_allclose(equations.gram.numpy(), rows.T @ rows, rtol=1e-13)
    np.testing.assert_allclose(equations.moments.numpy(), rows.T @ one_hot(labels, 3), rtol=1e-13)


def test_normal_equations_too_large_for_the_memory_are_refused_before_anything_runs():
    model = tiny_vir()
    width = (6 + 12) * 16  # flatten: T·(D + N)
    needed = 16 * (width + 1) ** 2
    assert normal_equations_bytes(width) == needed
    limit = needed / 2**30 * 0.99
    with pytest.raises(ConfigError) as error:
        RidgeClassifier(model, pooling="flatten", memory_limit_gib=limit)
    assert str(error.value) == (
        f"RidgeClassifier: the normal equations of {width} features (flatten pooling of [x_t ; h_t]) need "
        f"16·(F+1)² bytes = {needed / 2**30:.2f} GiB in float64, more than the {limit:.2f} GiB memory_limit_gib. "
        "Use pooling 'mean' or 'last' (T times narrower), fewer nodes or cores, or a machine with more memory."
    )
    RidgeClassifier(model, pooling="flatten", memory_limit_gib=needed / 2**30 * 1.01)  # just fits: accepted


def test_the_default_memory_limit_is_the_memory_available_now():
    psutil = pytest.importorskip("psutil")
    # two readings of memory that other processes use in between: equal only to within what they allocate meanwhile
    assert available_memory_bytes() == pytest.approx(psutil.virtual_memory().available, rel=0.1)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"backbone": tiny_vir(depth=2, mode="serial")}, "^RidgeClassifier: mode = 'serial' is not one of 'parallel'"),
        ({"pooling": "max"}, "^RidgeClassifier: pooling = 'max' is not one of 'mean', 'last', 'flatten'"),
        ({"ridges": ()}, "^RidgeClassifier: ridges is empty"),
        ({"ridges": (1e-3, 0.0)}, r"^RidgeClassifier: ridges \(λ\) = 0.0 is outside the allowed range \(0, inf\)"),
        (
            {"backbone": torch.nn.Linear(2, 2)},
            "^RidgeClassifier: the backbone is a Linear; the ridge readout reads a ViR",
        ),
    ],
)
def test_ridge_options_are_checked(arguments, message):
    with pytest.raises(ConfigError, match=message):
        RidgeClassifier(**{"backbone": tiny_vir(), **arguments})


def scalars(run: Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [event.value for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def split_arrays(classifier: RidgeClassifier, loader) -> tuple[np.ndarray, np.ndarray]:
    """The pooled features of a whole split (computed by the model's path) and its labels."""
    features, labels = zip(*((reservoir_features(classifier.backbone, x, "mean"), y) for x, y in loader), strict=True)
    return torch.cat(features).numpy(), torch.cat(labels).numpy()


def test_ridge_fit_chooses_lambda_on_validation_tests_its_checkpoint_and_sits_in_compare(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ridges = [1e-6, 1e-3, 1e-1, 10.0]
    config = [*DIGITS, *PATCH_2, "-c", str(RIDGE), "--model.init_args.ridges", str(ridges)]
    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    main(["fit", *config, *quiet, "--trainer.max_epochs", "3", "--test_after_fit", "true"])
    run = tmp_path / "logs" / "vir-digits" / "version_0"
    logged = scalars(run)

    # the same model and splits, built here, and the ridge solved with numpy for each λ of the grid
    classifier, data = build_from_config(config)
    data.setup("fit")
    data.setup("test")
    train_x, train_y = split_arrays(classifier, data.train_dataloader())
    val_x, val_y = split_arrays(classifier, data.val_dataloader())
    test_x, test_y = split_arrays(classifier, data.test_dataloader())
    solutions = [reference_ridge(train_x, one_hot(train_y, 10), relative_penalty(train_x, ridge)) for ridge in ridges]
    accuracies = [((val_x @ weight + bias).argmax(axis=1) == val_y).mean() for weight, bias in solutions]
    best = max(range(len(ridges)), key=lambda index: (accuracies[index], index))

    assert logged["val/acc"] == pytest.approx([accuracies[best]])  # one pass, validated once, though max_epochs 3
    assert logged["ridge/val_acc"] == pytest.approx(accuracies)
    assert logged["ridge/lambda"] == pytest.approx([ridges[best]])
    checkpoints = sorted(path.name for path in (run / "checkpoints").iterdir())
    assert checkpoints == [f"epoch000-val_acc{accuracies[best]:.4f}.ckpt", "last.ckpt"]
    state = read_checkpoint(run / "checkpoints" / checkpoints[0])["state_dict"]
    loaded = load_classifier(run / "checkpoints" / checkpoints[0])  # as the tools load it (dynamics, perturb)
    assert isinstance(loaded, RidgeClassifier) and torch.equal(loaded.readout_weight, state["readout_weight"])
    weight, bias = solutions[best]
    # the fit saw the same images in other batches, and float32 states differ in their last bits with the batch
    np.testing.assert_allclose(state["readout_weight"].numpy(), weight, rtol=0, atol=1e-4 * np.abs(weight).max())
    np.testing.assert_allclose(state["readout_bias"].numpy(), bias, rtol=0, atol=1e-4 * np.abs(bias).max())
    test_accuracy = ((test_x @ weight + bias).argmax(axis=1) == test_y).mean()
    assert logged["test/acc"] == pytest.approx([test_accuracy], abs=1e-6)  # the best checkpoint, reloaded
    assert logged["test_last/acc"] == pytest.approx([test_accuracy], abs=1e-6)  # the weights in memory
    assert logged["params/trainable"] == [(16 + 32 + 1) * 10 + (4 * 16 + 16)]  # W, b and the patch embedding
    assert logged["params/fixed"] == [32 * 32 + 16 * 32]  # W and V of the reservoir

    # one training step: the 16 tokens' embedding and reservoir products, and the update of A (float64)
    tokens, nodes, width = 16, 32, 16 + 32
    per_image = 2 * tokens * 4 * 16 + 2 * tokens * 16 * nodes + 2 * (tokens - 1) * nodes**2 + 2 * (width + 1) ** 2
    assert logged["perf/train_flops_per_image"] == [per_image]
    assert logged["perf/optimizer_steps"] == [1]  # the solve: the run's one update

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["class_path"] == "lit_vir.training.RidgeClassifier" and saved["optimizer"] is None
    main(["fit", *DIGITS, *PATCH_2, *QUICK_TRAINER, "--test_after_fit", "true"])  # gradient-trained, next to it
    compare([str(tmp_path / "logs" / "vir-digits" / "version_*"), "--output", str(tmp_path / "comparison")])
    with open(tmp_path / "comparison" / "compare.csv") as stream:
        rows = {row["model"]: row for row in csv.DictReader(stream)}
    assert set(rows) == {"ViR-1 ridge", "ViR-1"}
    assert rows["ViR-1 ridge"]["recipe"] == "closed-form" and rows["ViR-1"]["recipe"] == "reference"
    assert float(rows["ViR-1 ridge"]["test_acc"]) == pytest.approx(test_accuracy, abs=1e-6)


def test_ridge_fit_refuses_a_run_without_validation(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *DIGITS, *PATCH_2, "-c", str(RIDGE), "--trainer.limit_val_batches", "0"])
    assert exit_info.value.code == 2
    assert "λ is chosen on the validation split; enable validation" in capsys.readouterr().err


def test_ridge_fit_that_ends_before_its_validation_is_an_error_not_a_zero_readout(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *DIGITS, *PATCH_2, "-c", str(RIDGE), "--trainer.check_val_every_n_epoch", "2"])
    assert exit_info.value.code == 2
    assert "the fit ended before validation solved the normal equations" in capsys.readouterr().err


def test_ridge_memory_refusal_reaches_the_command_line_before_data_or_files(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        limit = ["--model.init_args.pooling", "flatten", "--model.init_args.memory_limit_gib", "0.0001"]
        main(["fit", *DIGITS, *PATCH_2, "-c", str(RIDGE), *limit])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("lit-vir: invalid configuration: RidgeClassifier: the normal equations of 768 features")
    assert not (tmp_path / "logs").exists()


def test_default_ridge_grid_is_a_log_grid():
    assert np.allclose(np.log10(DEFAULT_RIDGES), np.arange(-8, 2))


def digit_loaders(train: int = 300, val: int = 120) -> tuple[DataLoader, DataLoader]:
    """scikit-learn's 8×8 digits scaled to [0, 1]: a real split small enough for a fit in a second."""
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]  # (N, 1, 8, 8)
    labels = torch.tensor(digits.target)
    split = lambda part: TensorDataset(images[part], labels[part])  # noqa: E731
    return (
        DataLoader(split(slice(0, train)), batch_size=64),
        DataLoader(split(slice(train, train + val)), batch_size=50),
    )


def test_one_pass_in_process_chooses_the_numpy_lambda_and_validates_the_solved_readout_later(tmp_path, caplog):
    """The ridge module in a plain Trainer, against numpy: every λ's validation count and accuracy, the λ kept,
    W and b, the one update, the warning at the grid's edge, and a later `trainer.validate` of the solution."""
    torch.manual_seed(0)
    train, val = digit_loaders()
    ridges = [1e-9, 1e-8, 1e-6, 1e-2]  # the first two tie on these images: the larger must win
    classifier = RidgeClassifier(tiny_vir(), ridges=tuple(reversed(ridges)))  # any order: sorted, ties → larger λ
    trainer = Trainer(
        max_epochs=3,
        logger=CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        trainer.fit(classifier, train, val)
    train_x, train_y = split_arrays(classifier, train)
    val_x, val_y = split_arrays(classifier, val)
    solutions = [reference_ridge(train_x, one_hot(train_y, 10), relative_penalty(train_x, ridge)) for ridge in ridges]
    counts = [int(((val_x @ weight + bias).argmax(axis=1) == val_y).sum()) for weight, bias in solutions]
    best = max(range(len(ridges)), key=lambda index: (counts[index], index))
    assert counts[0] == counts[1] == max(counts) and best == 1  # the tie the test is about

    assert classifier.correct.tolist() == counts and classifier.correct.dtype == torch.int64 and classifier.seen == 120
    assert float(classifier.ridge) == ridges[best]
    weight, bias = solutions[best]
    np.testing.assert_allclose(classifier.readout_weight.numpy(), weight, rtol=0, atol=1e-4 * np.abs(weight).max())
    np.testing.assert_allclose(classifier.readout_bias.numpy(), bias, rtol=0, atol=1e-4 * np.abs(bias).max())
    assert trainer.current_epoch == 1 and trainer.global_step == 1  # one pass and one update, though max_epochs 3
    assert classifier.equations is None and classifier.candidates is None  # the (F+1)² sums are freed
    assert float(trainer.callback_metrics["val/acc"]) == pytest.approx(counts[best] / 120)
    assert float(trainer.callback_metrics["ridge/lambda"]) == pytest.approx(ridges[best])
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as stream:
        rows = [row for row in csv.DictReader(stream) if row.get("ridge/val_acc")]
    assert [float(row["ridge/val_acc"]) for row in rows] == pytest.approx([count / 120 for count in counts])
    assert [float(row["ridge/log10_lambda"]) for row in rows] == pytest.approx(np.log10(ridges))
    per_lambda = ", ".join(f"{ridge:g}: {count / 120:.4f}" for ridge, count in zip(ridges, counts, strict=True))
    assert f"RidgeClassifier: validation accuracy per λ: {per_lambda}; chose λ = {ridges[best]:g}" in caplog.text
    edge = [str(warning.message) for warning in caught if "edge of the grid" in str(warning.message)]
    expected = f"RidgeClassifier: the chosen λ = {ridges[best]:g} is at the edge of the grid; widen it."
    assert edge == ([expected] if best in (0, len(ridges) - 1) else [])

    validated = trainer.validate(classifier, val, verbose=False)[0]  # the solved readout, scored as any model
    assert validated["val/acc"] == pytest.approx(counts[best] / 120)


def test_the_edge_warning_comes_for_a_grid_of_several_only(tmp_path):
    """Two λ that tie: the larger, the grid's last, is kept and warned about; a single λ is no grid to widen."""
    train, val = digit_loaders()
    for ridges, warned in (
        ((1e-9, 1e-8), ["RidgeClassifier: the chosen λ = 1e-08 is at the edge of the grid; widen it."]),
        ((1e-3,), []),
    ):
        torch.manual_seed(0)
        classifier = RidgeClassifier(tiny_vir(), ridges=ridges)
        trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.fit(classifier, train, val)
        assert float(classifier.ridge) == ridges[-1]
        assert [str(warning.message) for warning in caught if "edge of the grid" in str(warning.message)] == warned


def test_the_memory_refusal_states_both_sizes_in_gib_and_an_exact_fit_is_accepted(monkeypatch):
    """1,000 nodes, flatten pooling: F = 16·(6 + 1000) = 16,096 features need 16·16,097² bytes (3.86 GiB); the
    sizes in the message are in GiB of 2³⁰ bytes, and equations that need exactly the limit fit."""
    model = tiny_vir(num_nodes=1000)
    width = 16 * (6 + 1000)
    needed = 16 * (width + 1) ** 2  # 4,145,800,144 bytes
    with pytest.raises(ConfigError) as error:
        RidgeClassifier(model, pooling="flatten", memory_limit_gib=0.5)
    assert str(error.value) == (
        f"RidgeClassifier: the normal equations of {width} features (flatten pooling of [x_t ; h_t]) need "
        "16·(F+1)² bytes = 3.86 GiB in float64, more than the 0.50 GiB memory_limit_gib. Use pooling 'mean' or "
        "'last' (T times narrower), fewer nodes or cores, or a machine with more memory."
    )
    RidgeClassifier(tiny_vir(), pooling="flatten", memory_limit_gib=16 * 289**2 / 2**30)  # needs exactly the limit
    monkeypatch.setattr("lit_vir.training.ridge.available_memory_bytes", lambda: 2**30 // 4)
    with pytest.raises(ConfigError) as error:
        RidgeClassifier(model, pooling="flatten")
    assert "more than the 0.25 GiB available now. Use pooling" in str(error.value)
    assert needed / 2**30 == pytest.approx(3.861, abs=1e-3)


def test_available_memory_is_meminfos_memavailable_else_the_free_pages(monkeypatch):
    """Read from a /proc/meminfo written here (kB of 1,024 bytes); without a MemAvailable line (kernels before 3.14)
    or without the file, the free pages times the page size."""
    meminfo = "MemTotal:       24000000 kB\nMemFree:          100000 kB\nMemAvailable:   12345678 kB\n"
    monkeypatch.setattr("lit_vir.training.ridge.open", lambda path: io.StringIO(meminfo), raising=False)
    assert available_memory_bytes() == 12345678 * 1024
    sizes = {"SC_AVPHYS_PAGES": 7000, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(os, "sysconf", sizes.__getitem__)
    monkeypatch.setattr("lit_vir.training.ridge.open", lambda path: io.StringIO(meminfo.replace("MemAvailable", "X")))
    assert available_memory_bytes() == 7000 * 4096

    def missing(path):
        raise FileNotFoundError(path)

    monkeypatch.setattr("lit_vir.training.ridge.open", missing)
    assert available_memory_bytes() == 7000 * 4096


def test_the_class_count_reaches_the_readout_and_the_normal_equations():
    classifier = RidgeClassifier(tiny_vir(num_classes=3), num_classes=3)
    assert classifier.num_classes == 3 and classifier.readout_weight.shape == (classifier.width, 3)
    train, val = digit_loaders()

    def three(loader: DataLoader) -> DataLoader:  # the digits 0, 1 and 2 only
        images, labels = loader.dataset.tensors
        return DataLoader(TensorDataset(images[labels < 3], labels[labels < 3]), batch_size=64)

    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(classifier, three(train), three(val))
    assert classifier.solved and classifier.readout_bias.shape == (3,)


def test_a_fit_on_several_processes_or_without_validation_is_refused_with_the_reason():
    """Real Trainers, built but not run: DDP over 2 CPU processes (world size 2), and validation switched off."""
    classifier = RidgeClassifier(tiny_vir())
    classifier.trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    assert classifier.trainer.world_size == 2
    with pytest.raises(ConfigError) as error:
        classifier.on_fit_start()
    assert str(error.value) == "RidgeClassifier: the ridge readout runs in one process; use --trainer.devices 1."
    classifier.trainer = Trainer(accelerator="cpu", devices=1, limit_val_batches=0, logger=False)
    with pytest.raises(ConfigError) as error:
        classifier.on_fit_start()
    assert str(error.value) == "RidgeClassifier: λ is chosen on the validation split; enable validation."


def test_an_unsolved_readout_at_the_end_of_training_is_an_error():
    with pytest.raises(ConfigError) as error:
        RidgeClassifier(tiny_vir()).on_train_end()
    assert str(error.value) == (
        "RidgeClassifier: the fit ended before validation solved the normal equations (a time or batch limit that "
        "stops the pass before its end?): the ridge readout needs its one epoch to end."
    )


def test_the_parameter_counts_are_logged_once_at_step_0_and_each_lambda_at_its_index(tmp_path):
    """params/*: the readout (F·C + C) and the embedding are trainable, the embedding frozen, W, V and b fixed (one
    core: N² + D·N + N); ridge/*: one row per λ at steps 0..K−1; val/acc_best is the chosen λ's accuracy."""
    torch.manual_seed(0)
    train, val = digit_loaders()
    ridges = (1e-6, 1e-3, 1e-1)
    classifier = RidgeClassifier(tiny_vir(), ridges=ridges)
    loggers = [CSVLogger(tmp_path), TensorBoardLogger(tmp_path / "tb")]
    trainer = Trainer(max_epochs=1, logger=loggers, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(classifier, train, val)
    with open(Path(loggers[0].log_dir) / "metrics.csv") as stream:
        rows = list(csv.DictReader(stream))
    events = EventAccumulator(loggers[1].log_dir)
    events.Reload()
    assert [event.step for event in events.Scalars("ridge/val_acc")] == [0, 1, 2]
    assert [event.step for event in events.Scalars("params/fixed")] == [0]
    embedding = sum(parameter.numel() for parameter in classifier.backbone.embedding.parameters())
    readout = (6 + 12) * 10 + 10  # mean pooling: F = D + N = 18 features, 10 classes
    (counts,) = [row for row in rows if row.get("params/trainable")]
    assert int(counts["step"]) == 0
    assert [float(counts[f"params/{name}"]) for name in ("trainable", "frozen", "fixed")] == [
        readout + embedding,
        embedding,
        12 * 12 + 6 * 12 + 12,
    ]
    per_lambda = [row for row in rows if row.get("ridge/val_acc")]
    assert [int(row["step"]) for row in per_lambda] == [0, 1, 2]
    accuracy = float(trainer.callback_metrics["val/acc"])
    assert float(trainer.callback_metrics["val/acc_best"]) == accuracy
    assert max(float(row["ridge/val_acc"]) for row in per_lambda) == pytest.approx(accuracy)
