"""Every `lit-vir` tool parses like `fit`: `-c` configs merged left to right, a `--print_config` that parses
back, dotted overrides that reach what the tool builds, and `fit`'s messages and exit codes for bad values."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import lightning
import pytest
import torch
import yaml

from lit_vir.cli import main
from lit_vir.commands.bench import COMPOSED_AFTER, config_args, configured_optimizer
from lit_vir.config import build_from_config, tool_parser
from lit_vir.data import MNISTDataModule
from lit_vir.models.vit_slim import SearchableViT, vit_hyperparameters
from lit_vir.training.checkpoints import load_classifier
from lit_vir.training.weight_decay import parameter_groups
from tests.conftest import CONFIGS, QUICK_TRAINER, TINY_OVERRIDES, TINY_VIR
from tests.fakedata import write_mnist

VIR = ["-c", str(CONFIGS / "vir.yaml"), *TINY_VIR]
MNIST = ["-c", str(CONFIGS / "data" / "mnist.yaml"), "--data.init_args.download", "false"]
TINY_VIT = [
    *("-c", str(CONFIGS / "vir.yaml"), "-c", str(CONFIGS / "model" / "vit_base.yaml")),
    *("--model.backbone.init_args.embed_dim", "16", "--model.backbone.init_args.num_heads", "2"),
    *("--model.backbone.init_args.depth", "2", "--model.backbone.init_args.patch_size", "7"),
    "--data.init_args.download",
    "false",
]
BAD_ALPHA = "--model.backbone.init_args.spectral_radius=0"


def call(capsys, *argv: str) -> SimpleNamespace:
    """`lit-vir ARGV` in process: its exit code (0 when it returns), stdout and stderr."""
    capsys.readouterr()
    try:
        main(list(argv))
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code if isinstance(exit_info.code, int) else (0 if exit_info.code is None else 1)
    out, err = capsys.readouterr()
    return SimpleNamespace(code=code, out=out, err=err)


def error_line(err: str) -> str:
    """The `lit-vir: ...` line of a run's stderr."""
    return next(line for line in err.splitlines() if line.startswith("lit-vir: "))


def printed_config(capsys, folder: Path, name: str, *argv: str) -> Path:
    """`lit-vir ARGV --print_config`, written to `folder/name` for a later `-c`."""
    shown = call(capsys, *argv, "--print_config")
    assert shown.code == 0, shown.err
    path = folder / name
    path.write_text(shown.out)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> SimpleNamespace:
    """A folder with generated MNIST, a tiny trained ViT run, and a ViT-Slim search checkpoint made from it
    (masks at their start values) as `lit-vir fit -c configs/slim/search.yaml` would save it."""
    folder = tmp_path_factory.mktemp("runs")
    write_mnist(folder / "data", train=120, test=40)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        main(["fit", *TINY_VIT, *QUICK_TRAINER, "--trainer.limit_train_batches", "2"])
    torch.set_num_threads(threads)
    vit = folder / "logs" / "visiontransformer-mnist" / "version_0" / "checkpoints" / "last.ckpt"
    search = SearchableViT.from_vit(load_classifier(vit).backbone)
    hyperparameters = {
        "_class_path": "lit_vir.training.ImageClassifier",
        "backbone": {"class_path": "lit_vir.models.SearchableViT", "init_args": vit_hyperparameters(search)},
        "num_classes": 10,
        "_instantiator": "lightning.pytorch.cli.instantiate_module",
    }
    state = {f"backbone.{name}": value for name, value in search.state_dict().items()}
    checkpoint = {"state_dict": state, "hparams_name": "kwargs", "hyper_parameters": hyperparameters}
    torch.save(
        {"pytorch-lightning_version": lightning.__version__, "epoch": 0, "global_step": 0, **checkpoint},
        folder / "search.ckpt",
    )
    return SimpleNamespace(folder=folder, vit=vit, search=folder / "search.ckpt")


def first_images_accuracy(checkpoint: Path, count: int) -> float:
    """The checkpoint's accuracy on the first `count` generated MNIST test images, evaluated here."""
    datamodule = MNISTDataModule(download=False)
    datamodule.prepare_data()
    datamodule.setup("test")
    images, labels = next(iter(datamodule.test_dataloader()))
    with torch.no_grad():
        predicted = load_classifier(checkpoint).backbone.eval()(images[:count]).argmax(dim=1)
    return (predicted == labels[:count]).sum().item() / count


# ----------------------------------------------------------------------------------------------- dynamics


def test_dynamics_override_reaches_the_reservoir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [*VIR, "--model.backbone.init_args.spectral_radius", "1.1", "--iid", "--measures", "spectrum"]
    assert call(capsys, "dynamics", *args, "--output", "a.json").code == 0
    (record,) = json.loads((tmp_path / "a.json").read_text())["reservoirs"]
    assert record["num_nodes"] == 32 and record["spectral_radius"] == pytest.approx(1.1, abs=1e-5)


def test_dynamics_printed_config_parses_back_and_holds_fits_sections(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [*VIR, "--model.backbone.init_args.spectral_radius", "1.2", "--iid", "--measures", "spectrum"]
    printed = printed_config(capsys, tmp_path, "dynamics.yaml", "dynamics", *args)
    assert call(capsys, "dynamics", "-c", str(printed), "--output", "b.json").code == 0
    (record,) = json.loads((tmp_path / "b.json").read_text())["reservoirs"]
    assert record["num_nodes"] == 32 and record["spectral_radius"] == pytest.approx(1.2, abs=1e-5)
    assert set(record["seconds"]) == {"spectrum"}  # the tool's own options came back too

    fit = yaml.safe_load(call(capsys, "fit", *args[:-3], "--print_config").out)
    tool = yaml.safe_load(printed.read_text())
    for section in ("seed_everything", "trainer", "model", "data", "test_after_fit", "optimizer", "lr_scheduler"):
        assert tool[section] == fit[section], section


def test_dynamics_bad_values_give_fits_message_and_exit_code(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # in process: the console script's exit codes are tested in test_cli.py
    fit = call(capsys, "fit", *VIR, BAD_ALPHA)
    dynamics = call(capsys, "dynamics", *VIR, BAD_ALPHA, "--iid")
    assert fit.code == dynamics.code == 2
    assert error_line(dynamics.err) == error_line(fit.err)
    assert error_line(fit.err).startswith("lit-vir: invalid configuration: Reservoir: spectral_radius (α) = 0.0")
    option = call(capsys, "dynamics", *VIR, "--iid", "--images", "0")
    assert option.code == 2
    assert error_line(option.err).startswith("lit-vir: invalid configuration: dynamics: images = 0 is outside")
    assert not list(tmp_path.iterdir())  # stopped before anything was written


# -------------------------------------------------------------------------------------------------- bench


def test_bench_times_the_configured_optimiser_and_its_parameter_groups():
    model, _ = build_from_config(
        [*config_args("vit_small-1", "mnist", CONFIGS, [str(CONFIGS / "recipe" / "strong.yaml")])]
    )
    optimizer = configured_optimizer(model)
    assert type(optimizer) is torch.optim.AdamW
    expected = parameter_groups(model.backbone)
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.05, 0.0]
    for group, parameters in zip(optimizer.param_groups, expected, strict=True):
        assert group["lr"] == 1e-3 and [id(p) for p in group["params"]] == [id(p) for p in parameters["params"]]
    assert model.scheduler_factory is not None  # the schedule is left out of the step, not off the module


def test_bench_printed_config_parses_back(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["bench", "--models", "vir-3", "vit_small+revit-9", "--batch_size", "7", "--overrides", "a.b=1"]
    printed = printed_config(capsys, tmp_path, "bench.yaml", *args)
    again = call(capsys, "bench", "-c", str(printed), "--print_config")
    assert again.code == 0 and again.out == printed.read_text()
    settings = yaml.safe_load(again.out)
    assert (settings["models"], settings["batch_size"], settings["overrides"]) == (
        ["vir-3", "vit_small+revit-9"],
        7,
        ["a.b=1"],
    )


def test_bench_bad_values_give_fits_message_and_exit_code(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    option = call(capsys, "bench", "--batch_size", "0")
    assert option.code == 2
    assert error_line(option.err).startswith("lit-vir: invalid configuration: bench: batch_size = 0 is outside")
    fit = call(capsys, "fit", *VIR, BAD_ALPHA)
    overrides = list(TINY_OVERRIDES)
    worker = call(
        capsys, "bench", "--models", "vir-1", "--configs_dir", str(CONFIGS), "--overrides", *overrides, BAD_ALPHA[2:]
    )
    assert fit.code == worker.code == 2
    assert error_line(worker.err.split("failed:", 1)[1]) == error_line(fit.err)
    unknown = call(capsys, "bench", "--models", "nonesuch-3", "--configs_dir", str(CONFIGS))
    assert unknown.code == 2 and "nonesuch.yaml" in unknown.err and "vit_small" in unknown.err


def model_families() -> list[str]:
    return ["vir", *sorted(path.stem for path in (CONFIGS / "model").glob("*.yaml"))]


def test_every_piece_that_changes_another_is_composed_after_it():
    """A piece whose header says "compose ... after" another holds only a change: bench must know which."""
    for path in (CONFIGS / "model").glob("*.yaml"):
        header = " ".join(line for line in path.read_text().splitlines() if line.startswith("#"))
        if re.search(r"[Cc]ompose (it )?after", header):
            assert path.stem in COMPOSED_AFTER, path
            assert f"configs/model/{COMPOSED_AFTER[path.stem]}.yaml" in header, path


@pytest.mark.parametrize("family", model_families())
def test_each_bench_model_name_builds_what_its_pieces_compose_to(family):
    chain = [family]
    while chain[0] in COMPOSED_AFTER:
        chain.insert(0, COMPOSED_AFTER[chain[0]])
    by_hand = ["-c", str(CONFIGS / "vir.yaml"), "-c", str(CONFIGS / "data" / "cifar10.yaml")]
    by_hand += [item for name in chain if name != "vir" for item in ("-c", str(CONFIGS / "model" / f"{name}.yaml"))]
    parser = tool_parser("lit-vir", "", "", sections="run")
    by_bench = parser.parse_args(config_args(family, "cifar10", CONFIGS))
    expected = parser.parse_args(by_hand)
    assert by_bench.model == expected.model and by_bench.data == expected.data
    own = yaml.safe_load((CONFIGS / "model" / f"{family}.yaml").read_text()) if family != "vir" else {}
    own_class = own.get("model", {}).get("init_args", {}).get("backbone", {}).get("class_path")
    assert own_class in (None, by_bench.model.init_args.backbone.class_path)


# ------------------------------------------------------------------------------------------------ perturb


def test_perturb_data_override_reaches_the_test_batches(runs, monkeypatch, capsys):
    monkeypatch.chdir(runs.folder)
    expected = first_images_accuracy(runs.vit, 13)
    assert 0 < expected < 1  # so that 13 images and the 40 of an ignored override cannot agree
    args = ["--ckpt_path", str(runs.vit), *MNIST, "--data.init_args.batch_size", "13", "--limit_batches", "1"]
    shown = call(capsys, "perturb", *args, "--kinds", "noise", "--noise", "0", "--output", "p")
    assert shown.code == 0, shown.err
    (row,) = json.loads((runs.folder / "p" / "perturbation.json").read_text())
    assert row["accuracy"] == pytest.approx(expected, abs=1e-12)


def test_perturb_printed_config_parses_back(runs, monkeypatch, capsys):
    monkeypatch.chdir(runs.folder)
    args = ["perturb", "--ckpt_path", str(runs.vit), *MNIST, "--kinds", "noise", "--noise", "0", "0.1"]
    printed = printed_config(capsys, runs.folder, "perturb.yaml", *args, "--limit_batches", "1", "--output", "q")
    assert call(capsys, *args, "--limit_batches", "1", "--output", "direct").code == 0
    assert call(capsys, "perturb", "-c", str(printed)).code == 0
    direct, again = (json.loads((runs.folder / name / "perturbation.json").read_text()) for name in ("direct", "q"))
    assert again == direct and [row["level"] for row in again] == [0.0, 0.1]


def test_perturb_bad_values_and_missing_data_give_fits_messages(runs, monkeypatch, capsys):
    monkeypatch.chdir(runs.folder)
    option = call(capsys, "perturb", "--ckpt_path", str(runs.vit), "--limit_batches", "0")
    assert option.code == 2
    assert error_line(option.err).startswith("lit-vir: invalid configuration: perturb: limit_batches = 0 is outside")
    elsewhere = [*MNIST, "--data.init_args.root", "elsewhere"]
    fit = call(capsys, "fit", *TINY_VIT, *elsewhere)
    perturb = call(capsys, "perturb", "--ckpt_path", str(runs.vit), *elsewhere, "--kinds", "noise")
    assert fit.code == perturb.code == 1
    assert error_line(perturb.err) == error_line(fit.err) and "elsewhere" in error_line(fit.err)


# ---------------------------------------------------------------------------------------------- attention


def test_attention_printed_config_parses_back_and_overrides_reach_the_data(runs, monkeypatch, capsys):
    monkeypatch.chdir(runs.folder)
    args = ["attention", "--ckpt_path", str(runs.vit), *MNIST, "--images", "5"]
    printed = printed_config(capsys, runs.folder, "attention.yaml", *args, "--output", "a2")
    assert call(capsys, *args, "--output", "a1").code == 0
    assert call(capsys, "attention", "-c", str(printed)).code == 0
    first, again = (json.loads((runs.folder / name / "attention_similarity.json").read_text()) for name in ("a1", "a2"))
    assert again == first and [len(values) for values in first.values()] == [1]  # depth 2: one block pair
    missing = call(capsys, *args, "--data.init_args.root", "elsewhere")
    assert missing.code == 1 and "elsewhere" in error_line(missing.err)


def test_attention_bad_value_gives_fits_message(runs, monkeypatch, capsys):
    monkeypatch.chdir(runs.folder)
    shown = call(capsys, "attention", "--ckpt_path", str(runs.vit), "--images", "0")
    assert shown.code == 2
    assert error_line(shown.err).startswith("lit-vir: invalid configuration: attention: images = 0 is outside")


# --------------------------------------------------------------------------------------------------- slim


def test_slim_printed_config_parses_back_and_overrides_reach_the_data(runs, monkeypatch, capsys):
    monkeypatch.chdir(runs.folder)
    args = ["slim", str(runs.search), "--budget", "0.5", "--repeats", "1", "--warmup", "0", "--batch-size", "2"]
    args += [*MNIST, "--report-only", "--limit-batches", "1"]
    printed = printed_config(capsys, runs.folder, "slim.yaml", *args, "--json", "again.json")
    assert yaml.safe_load(printed.read_text())["report_only"] is True
    assert call(capsys, *args, "--json", "direct.json").code == 0
    assert call(capsys, "slim", "-c", str(printed)).code == 0
    direct, again = (json.loads((runs.folder / name).read_text()) for name in ("direct.json", "again.json"))
    assert [row["accuracy"] for row in again["budgets"]] == [row["accuracy"] for row in direct["budgets"]]
    assert again["budgets"][0]["params"] == direct["budgets"][0]["params"]
    assert not (runs.folder / "slim").exists()  # --report-only came back from the printed config
    missing = call(capsys, *args, "--data.init_args.root", "elsewhere")
    assert missing.code == 1 and "elsewhere" in error_line(missing.err)


def test_slim_bad_budget_stops_before_the_checkpoint_is_read(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shown = call(capsys, "slim", "no-such.ckpt", "--budget", "0.5", "1.5")
    assert shown.code == 2
    line = error_line(shown.err)
    assert line.startswith("lit-vir: invalid configuration: slim: budget = 1.5 is outside the allowed range (0, 1]")


# ------------------------------------------------------------------------------------------------ compare


def test_compare_config_and_override_reach_the_tables(runs, monkeypatch, capsys):
    monkeypatch.chdir(runs.folder)
    settings = {"runs": ["logs/*/version_*"], "output": "comparison", "title": "from the file"}
    (runs.folder / "compare.yaml").write_text(yaml.safe_dump(settings))
    assert call(capsys, "compare", "-c", "compare.yaml", "--title", "overridden").code == 0
    text = (runs.folder / "comparison" / "compare.md").read_text()
    assert text.startswith("# overridden\n")
    assert "| ViT-D16-2 | reference | MNIST | 1 epochs | 1 |" in text  # model, recipe, dataset, length, runs

    printed = printed_config(capsys, runs.folder, "printed.yaml", "compare", "-c", "compare.yaml")
    assert call(capsys, "compare", "-c", str(printed), "--output", "again").code == 0
    assert (runs.folder / "again" / "compare.csv").read_text() == (
        runs.folder / "comparison" / "compare.csv"
    ).read_text()


def test_compare_bad_option_gives_fits_message(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fit = call(capsys, "fit", "--titel", "x")
    compare = call(capsys, "compare", "logs", "--titel", "x")
    assert fit.code == compare.code == 2
    assert fit.err.strip().splitlines()[-1] == compare.err.strip().splitlines()[-1]
    assert "--titel" in compare.err.strip().splitlines()[-1]


# ----------------------------------------------------------------------------------------------- quantize

QUANTIZE_QUICK = ["--calibration", "16", "--bits", "8", "--targets", "--variants", "mptq", "--limit_batches", "1"]


def test_quantize_printed_config_parses_back_and_overrides_reach_the_data(runs, monkeypatch, capsys):
    monkeypatch.chdir(runs.folder)
    args = ["quantize", "--ckpt_path", str(runs.vit), *MNIST, "--data.init_args.batch_size", "13", *QUANTIZE_QUICK]
    printed = printed_config(capsys, runs.folder, "quantize.yaml", *args, "--output", "z2")
    direct = call(capsys, *args, "--output", "z1")
    assert direct.code == 0, direct.err
    assert call(capsys, "quantize", "-c", str(printed)).code == 0
    first, again = (json.loads((runs.folder / name / "quantization.json").read_text()) for name in ("z1", "z2"))
    assert [row["accuracy"] for row in again["rows"]] == [row["accuracy"] for row in first["rows"]]
    assert first["test_images"] == 13  # the batch-size override reached the test batches (one batch of 13)
    assert first["rows"][0]["accuracy"] == pytest.approx(first_images_accuracy(runs.vit, 13), abs=1e-12)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--bits", "1"], "quantize: bits = 1 is outside the allowed range [2, 16]"),
        (["--calibration", "0"], "quantize: calibration = 0 is outside"),
        (["--alpha", "1.5"], "quantize: alpha = 1.5 is outside the allowed range [0, 1]"),
        (["--targets", "W5X"], "quantize: targets: budget 'W5X' is neither a number"),
        (["--targets", "3", "--choices", "8", "4"], "go below the lowest of choices [8, 4]"),
    ],
)
def test_quantize_bad_values_give_fits_message_before_the_checkpoint_is_read(tmp_path, capsys, option, message):
    shown = call(capsys, "quantize", "--ckpt_path", str(tmp_path / "absent.ckpt"), *option)
    assert shown.code == 2, shown.err
    line = error_line(shown.err)
    assert line.startswith("lit-vir: invalid configuration: ") and message in line
