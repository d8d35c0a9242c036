"""What a run is called (`lit_vir.training.labels`): the model, recipe, budget and precision labels and the HPARAMS
columns, read off saved configs written here by hand."""

from __future__ import annotations

import pytest

from lit_vir.training.labels import budget_label, model_label, precision_label, recipe_label, run_hyperparameters


def config(backbone: str = "ViR", options: dict | None = None, **sections) -> dict:
    """A saved config.yaml's dict: the backbone's class and init_args, and any other section given."""
    model = {"backbone": {"class_path": f"lit_vir.models.{backbone}", "init_args": options or {}}}
    return {"model": {"init_args": model | sections.pop("module", {})}, **sections}


@pytest.mark.parametrize(
    ("backbone", "options", "label"),
    [
        ("ViR", {"depth": 2}, "ViR-2"),
        ("ViR", {"depth": 3, "mode": "parallel"}, "ViR-3"),
        ("ViR", {"depth": 3, "mode": "serial", "detach": True}, "ViR-3 serial detach"),
        ("ViR", {"depth": 1, "detach": True}, "ViR-1"),  # detach means nothing without serial cores
        ("ViR", {"depth": 1, "memoryless": True, "readout": "linear"}, "ViR-1 memoryless linear_readout"),
        ("ViR", {"depth": 1, "token_order": "shuffled", "use_reservoir": False}, "ViR-1 no_reservoir shuffled_tokens"),
        ("ViR", {"depth": 1, "use_reservoir": True, "memoryless": False, "readout": "quadratic"}, "ViR-1"),
        ("VisionTransformer", {"depth": 12, "embed_dim": 768}, "ViT-Base-12"),
        ("VisionTransformer", {"depth": 4, "embed_dim": 64}, "ViT-D64-4"),
        ("TimmModel", {"name": "resnet18"}, "timm/resnet18"),
        ("ViTAEv2", {"depth": 3}, "ViTAEv2-3"),
        ("ReViT", {}, "ReViT"),
    ],
)
def test_model_labels_name_the_backbone_and_its_ablations(backbone, options, label):
    assert model_label(config(backbone, options)) == label


@pytest.mark.parametrize(
    ("sections", "label"),
    [
        ({}, "reference"),
        ({"module": {"scheduler": {"class_path": "lit_vir.training.WarmupCosineLR"}}}, "strong"),
        ({"module": {"batch_mixing": {"class_path": "lit_vir.training.BatchMixing"}}}, "from-scratch"),
        ({"data": {"init_args": {"auto_augment": "rand_augment"}}}, "from-scratch"),
        ({"data": {"init_args": {"random_erasing": 0.25}}}, "from-scratch"),
        ({"data": {"init_args": {"random_erasing": 0.0, "auto_augment": None}}}, "reference"),
        (
            {"trainer": {"callbacks": [{"class_path": "lit_vir.training.callbacks.ema.ExponentialMovingAverage"}]}},
            "from-scratch",
        ),
        ({"trainer": {"callbacks": [{"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"}]}}, "reference"),
        ({"trainer": {"callbacks": None}, "data": {"init_args": None}}, "reference"),
    ],
)
def test_recipe_labels_read_the_schedule_augmentation_mixing_and_averaging(sections, label):
    assert recipe_label(config(**sections)) == label


@pytest.mark.parametrize(
    ("limit", "label"),
    [
        (None, ""),
        ("00:00:15:00", "15m"),
        ("00:01:30:00", "1h30m"),
        ("00:00:00:45", "45s"),
        ("00:02:05:09", "2h05m9s"),
        ("01:00:00:00", "24h00m"),  # with hours, the minutes always in two digits
        ({"minutes": 15}, "15m"),
        ({"days": 1, "hours": 1, "seconds": 30}, "25h00m30s"),
        ({"hours": 1, "minutes": 60}, "2h00m"),
    ],
)
def test_budget_labels_write_hours_minutes_and_seconds(limit, label):
    assert budget_label(config(trainer={"max_time": limit})) == label
    assert budget_label(config()) == ""


@pytest.mark.parametrize(
    ("precision", "autocast", "label"),
    [
        (None, False, "32-true"),
        ("bf16-mixed", False, "bf16-mixed"),
        ("bf16-mixed", True, "bf16-mixed +recurrence"),
        ("32-true", True, "32-true"),  # autocast does nothing at full precision
    ],
)
def test_precision_labels_say_whether_the_recurrence_ran_under_autocast(precision, autocast, label):
    options = {"depth": 1, "autocast_recurrence": autocast}
    assert precision_label(config("ViR", options, trainer={"precision": precision})) == label


def test_hyperparameter_columns_of_a_vir_run():
    saved = config(
        "ViR",
        {"depth": 3, "mode": "serial", "spectral_radius": 0.9, "num_nodes": 1000},
        module={"optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.001}}},
        data={"class_path": "lit_vir.data.CIFAR10DataModule", "init_args": {}},
        trainer={"max_time": "00:00:15:00", "precision": "bf16-mixed"},
        seed_everything=7,
    )
    assert run_hyperparameters(saved) == {
        "model": "ViR-3 serial",
        "dataset": "CIFAR10",
        "recipe": "reference",
        "budget": "15m",
        "precision": "bf16-mixed",
        "seed": 7,
        "depth": 3,
        "spectral_radius": 0.9,
        "num_nodes": 1000,
        "lr": 0.001,
    }


@pytest.mark.parametrize(("seed", "column"), [(True, -1), (None, -1), (False, -1), (0, 0)])
def test_hyperparameter_columns_leave_out_what_a_run_lacks(seed, column):
    """A ViT has no α or N, a default optimiser no lr, an epoch-bounded run the budget `epochs`; a seed that is
    not a number (`seed_everything: true` draws one) is −1."""
    saved = config(
        "VisionTransformer", {"depth": 2, "embed_dim": 192}, data={"class_path": "lit_vir.data.DigitsDataModule"}
    )
    saved["seed_everything"] = seed
    assert run_hyperparameters(saved) == {
        "model": "ViT-Small-2",
        "dataset": "Digits",
        "recipe": "reference",
        "budget": "epochs",
        "precision": "32-true",
        "seed": column,
        "depth": 2,
    }
