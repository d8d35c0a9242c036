"""The how-to pages, run: every bash and Python block of docs/how-to/own-images.md and then export-and-predict.md
that is not marked `<!-- not run by the tests: ... -->`, in order, in one folder of generated PNG and JPEG images
(several sizes and modes), each `lit-vir` command in process with a tiny model appended. What they wrote is then
checked against computations made here: each prediction row against the checkpoint's own logits of the image read
by Pillow, the ONNX, .pt2 and safetensors models against PyTorch, the model card's test accuracy against a plain
loop over the test split. Finding and running the blocks is tests/doc_pages.py's, as for every page; that every block
is run or marked is checked for all pages by tests/test_docs_pages.py."""

from __future__ import annotations

import csv
import json
import logging
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lit_vir.training.checkpoints import load_classifier, read_checkpoint, saved_preprocessing
from tests.conftest import REPO
from tests.doc_pages import Command, blocks, run_block
from tests.fakedata import reference_pixels, write_class_folders, write_hf_dataset, write_image

PAGES = [REPO / "docs" / "how-to" / "own-images.md", REPO / "docs" / "how-to" / "export-and-predict.md"]
RUN = Path("logs/vir-imagefolder/version_0")
CLASSES = {"cat": 12, "dog": 10, "emu": 9}


def the_images(folder: Path) -> None:
    """my_images/ (three classes, PNG and JPEG of six sizes and modes), new_photos/ (a labelled and an unlabelled
    image of other sizes) and the saved Hugging Face dataset cifar10_hf/ the pages use."""
    write_class_folders(folder / "my_images", CLASSES)
    write_image(folder / "new_photos" / "garden.png", "RGBA", (40, 25), 100, 1)
    write_image(folder / "new_photos" / "dog" / "b.jpg", "L", (7, 9), 150, 2)
    write_image(folder / "new_photos" / "trips" / "c.png", "P", (30, 30), 40, 3)
    write_hf_dataset(folder / "cifar10_hf", {"train": {"cat": 6, "dog": 6}, "test": {"cat": 2, "dog": 2}})
    (folder / "configs").symlink_to(REPO / "configs")


def truncate_one_training_image(folder: Path) -> Path:
    path = next((folder / "my_images" / "dog").glob("*.jpg"))
    path.write_bytes(path.read_bytes()[:200])
    return path


def run_pages(folder: Path, capsys) -> dict[str, str]:
    """Run every block (tests/doc_pages.py: each lit-vir command in process, tiny); returns each command line's
    printed output (stdout and stderr)."""

    def bad_file_first(command: Command) -> None:  # the page's bad file, made before the command that skips it
        if "--data.skip_bad_images" in command.argv:
            truncate_one_training_image(folder)

    outputs = {}
    for page in PAGES:
        for block in blocks(page):
            for command, output in run_block(block, capsys, prepare=bad_file_first):
                outputs[shlex.join(command.argv)] = output
    return outputs


def written(output: str, name: str) -> Path:
    match = re.search(rf"wrote (\S*{re.escape(name)})", output)
    assert match, f"no 'wrote ...{name}' in:\n{output}"
    return Path(match[1])


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def normalised(path: Path, preprocessing: dict) -> torch.Tensor:
    """The image read by Pillow (`reference_pixels`) and normalised by the checkpoint's mean and std."""
    pixels = reference_pixels(path, preprocessing["image_size"], preprocessing["in_channels"])
    mean, std = (np.array(preprocessing[key])[:, None, None] for key in ("mean", "std"))
    return torch.tensor((pixels - mean) / std, dtype=torch.float32)


def check_rows(rows: list[dict[str, str]], backbone, preprocessing: dict, top_k: int) -> None:
    """Each row: the image's top-k classes and probabilities by the checkpoint's backbone, computed here."""
    names = preprocessing["class_names"]
    images = torch.stack([normalised(Path(row["image"]), preprocessing) for row in rows])
    with torch.no_grad():
        probabilities = backbone(images).softmax(dim=-1)
    top = probabilities.topk(top_k, dim=1)
    for row, classes, values in zip(rows, top.indices.tolist(), top.values.tolist(), strict=True):
        assert [row[f"class_{rank}"] for rank in range(1, top_k + 1)] == [names[index] for index in classes]
        found = [float(row[f"probability_{rank}"]) for rank in range(1, top_k + 1)]
        assert found == pytest.approx(values, abs=1e-5)
        label = row["label"]
        assert row["correct"] == ("" if not label else str(int(names[classes[0]] == label)))


def test_the_how_to_pages_run_and_write_what_they_say(tmp_path, monkeypatch, capsys, caplog):
    the_images(tmp_path)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="lit_vir"):
        outputs = run_pages(tmp_path, capsys)
    checkpoint_path = RUN / "checkpoints" / "last.ckpt"
    checkpoint = read_checkpoint(checkpoint_path)
    preprocessing = saved_preprocessing(checkpoint, checkpoint_path)
    backbone = load_classifier(checkpoint_path).backbone.eval()

    # own-images.md: the run folder's record is the checkpoint's, its statistics the training split's pixels
    assert yaml.safe_load((RUN / "preprocessing.yaml").read_text()) == preprocessing
    assert preprocessing["class_names"] == ["cat", "dog", "emu"]
    hub_run = yaml.safe_load(Path("logs/vir-huggingface/version_0/preprocessing.yaml").read_text())
    assert hub_run["class_names"] == ["cat", "dog"] and hub_run["in_channels"] == 3
    assert re.search(r"skipped 1 of the \d+ train images that cannot be used:\n\s+my_images/dog/\d+\.jpg", caplog.text)

    # export-and-predict.md: a folder predicted from the checkpoint alone, every image, each row recomputed
    photos = written(outputs[next(c for c in outputs if c.endswith("--data.predict_root new_photos"))], ".csv")
    rows = read_rows(photos)
    assert [row["image"] for row in rows] == ["new_photos/dog/b.jpg", "new_photos/garden.png", "new_photos/trips/c.png"]
    check_rows(rows, backbone, preprocessing, top_k=3)
    summary = json.loads(photos.with_suffix(".json").read_text())
    assert summary["labelled"] == 1 and summary["accuracy"] == float(rows[0]["correct"])
    custom = read_rows(Path("new_photos.csv"))
    check_rows(custom, backbone, preprocessing, top_k=2)
    assert "class_3" not in custom[0]

    # the test split from the run's config: every test image, labelled; its accuracy a plain loop's
    split = written(outputs[next(c for c in outputs if "config.yaml" in c)], ".csv")
    rows = read_rows(split)
    test_images = sorted(Path(row["image"]) for row in rows)
    assert len(rows) == round(0.1 * sum(CLASSES.values())) and all(row["label"] for row in rows)
    check_rows(rows, backbone, preprocessing, top_k=3)
    accuracy = float(np.mean([int(row["correct"]) for row in rows]))
    assert json.loads(split.with_suffix(".json").read_text())["accuracy"] == pytest.approx(accuracy)

    reference = torch.stack([normalised(path, preprocessing) for path in test_images])  # real images, normalised
    with torch.no_grad():
        expected = backbone(reference)

    # ONNX: onnxruntime on these images gives PyTorch's logits; the reservoir was traced as plain steps
    import onnx
    import onnxruntime

    onnx_path = RUN / "checkpoints" / "last.onnx"
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"images": reference.numpy()})[0]
    assert np.abs(logits - expected.numpy()).max() <= 1e-4
    operators = {node.op_type for node in onnx.load(str(onnx_path)).graph.node}
    assert "Tanh" in operators and not operators & {"ScatterElements", "ScatterND"}

    # safetensors: load_model (plain torch) gives the same logits; the card's numbers are the run's
    import lit_vir
    from lit_vir.export import read_manifest

    loaded = lit_vir.load_model("my_model")
    with torch.no_grad():
        assert torch.equal(loaded(reference), expected)
    assert read_manifest("my_model")["preprocessing"] == preprocessing
    card = Path("my_model/README.md").read_text()
    assert f"| test accuracy | {accuracy:.4f} (`test_last/acc`" in card  # last.ckpt: the final weights, tested
    fixed = sum(tensor.numel() for name, tensor in backbone.state_dict().items() if name.startswith("reservoirs."))
    trainable = sum(parameter.numel() for parameter in backbone.parameters())
    assert f"| parameters | {trainable:,} trainable" in card and f"; {fixed:,} fixed" in card
    # the command as the run recorded it: the console script's path, then the page's words
    trained = (
        r"\| training command \| `\S*/lit-vir fit -c configs/vir\.yaml -c configs/data/image_folder\.yaml --data\.root "
    )
    assert re.search(trained, card)

    # torch.export: the .pt2 program gives the same logits
    program = torch.export.load(str(RUN / "checkpoints" / "last.pt2")).module()
    assert torch.allclose(program(reference), expected, atol=1e-5)
