"""`lit-vir predict` writes one row per image however it runs: two DDP processes (gloo, CPU) gather their rows once,
and a checkpoint that cannot say how it reads images is refused with what to give instead."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch

from lit_vir.cli import main
from lit_vir.training.checkpoints import load_classifier, read_checkpoint, saved_preprocessing
from tests.conftest import CONFIGS, QUICK_TRAINER, TINY_VIR
from tests.fakedata import reference_pixels, write_class_folders, write_image

PHOTOS = 7  # odd: the two processes predict 4 and 3 images


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny ViR fitted in process on a folder of generated images; its last.ckpt."""
    folder = tmp_path_factory.mktemp("run")
    write_class_folders(folder / "my_images", {"cat": 8, "dog": 8, "emu": 8})
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        main(
            [
                "fit",
                "-c",
                str(CONFIGS / "vir.yaml"),
                "-c",
                str(CONFIGS / "data" / "image_folder.yaml"),
                "--data.root",
                "my_images",
                "--data.image_size",
                "8",
                "--data.num_workers",
                "0",
                *TINY_VIR,
                *QUICK_TRAINER,
            ]
        )
    return folder / "logs" / "vir-imagefolder" / "version_0" / "checkpoints" / "last.ckpt"


def test_ddp_processes_gather_their_rows_once_in_image_order(trained, tmp_path, run_cli):
    for number in range(PHOTOS):
        write_image(tmp_path / "photos" / f"{number}.png", "RGB", (9 + number, 12), 30 * number, number)
    done = run_cli(
        "predict",
        "--ckpt_path",
        str(trained),
        "--data.predict_root",
        "photos",
        "--data.batch_size",
        "2",
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
    )
    output = done.stdout + done.stderr
    assert output.count("wrote ") == 1 and output.count("Predictions") == 1  # rank zero alone writes and reports
    path = tmp_path / re.search(r"wrote (\S+predictions.csv)", output)[1]
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["image"] for row in rows] == [f"photos/{number}.png" for number in range(PHOTOS)]  # each once
    checkpoint = read_checkpoint(trained)
    preprocessing = saved_preprocessing(checkpoint, trained)
    mean, std = (torch.tensor(preprocessing[key])[:, None, None] for key in ("mean", "std"))
    images = torch.stack(
        [
            (torch.tensor(reference_pixels(tmp_path / row["image"], 8, 3), dtype=torch.float32) - mean) / std
            for row in rows
        ]
    )
    with torch.no_grad():
        probabilities = load_classifier(trained).backbone.eval()(images).softmax(dim=-1)
    best = probabilities.max(dim=1)
    names = preprocessing["class_names"]
    assert [row["class_1"] for row in rows] == [names[index] for index in best.indices.tolist()]
    assert [float(row["probability_1"]) for row in rows] == pytest.approx(best.values.tolist(), abs=1e-5)


def test_a_checkpoint_without_its_preprocessing_asks_for_the_data_config(trained, tmp_path, capsys):
    checkpoint = read_checkpoint(trained)
    for key in [key for key, value in checkpoint.items() if isinstance(value, dict) and "preprocessing" in value]:
        checkpoint[key].pop("preprocessing")  # as a checkpoint written before lit_vir saved the record
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--ckpt_path", str(old), "--data.predict_root", str(tmp_path)])
    assert exit_info.value.code == 1
    assert re.fullmatch(
        rf"lit-vir: {re.escape(str(old))}: holds no preprocessing record \(class names, image size, "
        r"normalisation\).*Give the data config it was trained with \(-c config.yaml of its run\)\.\n",
        capsys.readouterr().err,
        re.S,
    )
