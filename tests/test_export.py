"""Exports leave lit_vir and come back equal: every model family to ONNX and torch.export (slow: one export each),
the portable folder without Lightning or pickled code, and the refusals — an op ONNX lacks, logits that differ,
a foreign class path — with their reasons and nothing half-written."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lit_vir
from lit_vir.atomic import replaced_atomically
from lit_vir.cli import build_from_config, main
from lit_vir.export import (
    ExportError,
    build_backbone,
    check_logits,
    export_onnx,
    export_program,
    load_model,
    load_program,
    onnx_session,
    run_onnx,
    save_portable,
)
from lit_vir.models import MobileViT, SlimViT, ViTAEv2
from lit_vir.models.counting import forward_flops
from tests.conftest import CONFIGS, REPO, TINY_VIR

DIGITS = ["-c", str(CONFIGS / "vir.yaml"), "-c", str(CONFIGS / "data" / "digits.yaml")]
SMALL_VIT = [
    "--model.backbone.init_args.depth",
    "3",
    "--model.backbone.init_args.embed_dim",
    "24",
    "--model.backbone.init_args.num_heads",
    "2",
]


def from_configs(*pieces: str, options: tuple[str, ...] = ()) -> nn.Module:
    """The backbone `lit-vir fit` builds from configs/ pieces on the digits (8×8 grey, 10 classes)."""
    arguments = [*DIGITS, *(item for piece in pieces for item in ("-c", str(CONFIGS / piece))), *options]
    model, _ = build_from_config(arguments)
    return model.backbone.eval()


FAMILIES = {
    "vir": lambda: from_configs(options=tuple(TINY_VIR)),
    "vir-parallel-3": lambda: from_configs("depth/3.yaml", options=tuple(TINY_VIR)),
    "vir-serial-3": lambda: from_configs("depth/3.yaml", "model/vir_serial.yaml", options=tuple(TINY_VIR)),
    **{
        f"vir-{ablation.stem}": (lambda name=ablation.name: from_configs(f"ablation/{name}", options=tuple(TINY_VIR)))
        for ablation in sorted((CONFIGS / "ablation").glob("*.yaml"))
    },
    "vit": lambda: from_configs("model/vit_small.yaml", options=tuple(SMALL_VIT)),
    "revit": lambda: from_configs("model/vit_small.yaml", "model/revit.yaml", options=tuple(SMALL_VIT)),
    "vit-slim": lambda: SlimViT(
        10,
        8,
        1,
        patch_size=2,
        embed_dim=24,
        head_dim=12,
        head_widths=[[12, 7], [5], []],
        mlp_widths=[30, 0, 11],
        token_order=[0, 3, 1, 7, 16, 2],
        token_counts=[6, 4, 2],
    ).eval(),
    "vitae-v2": lambda: ViTAEv2(10, 32, 3).eval(),
    "mobilevit": lambda: MobileViT(10, 32, 3).eval(),
}


def input_shape(model: nn.Module) -> tuple[int, int, int]:
    return (3, 32, 32) if isinstance(model, (ViTAEv2, MobileViT)) else (1, 8, 8)


def trained_like(model: nn.Module) -> nn.Module:
    """Weights moved off their initial values (zero-initialised heads would make every logit equal)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_model_family_exports_to_onnx_and_torch_export_with_equal_logits(family, tmp_path):
    model = trained_like(FAMILIES[family]())
    shape = input_shape(model)
    example = torch.randn(2, *shape)
    export_onnx(model, example, tmp_path / "model.onnx")
    session = onnx_session(tmp_path / "model.onnx")
    checks = check_logits(model, lambda images: run_onnx(session, images), shape, (1, 5, 16))
    assert [check.batch for check in checks] == [1, 5, 16] and all(check.max_abs_difference <= 1e-4 for check in checks)
    images = torch.randn(3, *shape)
    with torch.no_grad():
        assert np.abs(run_onnx(session, images) - model(images).numpy()).max() <= 1e-4
    export_program(model, example, tmp_path / "model.pt2")
    with torch.no_grad():
        assert torch.allclose(load_program(tmp_path / "model.pt2")(images), model(images), atol=1e-5)


def test_the_families_cover_every_ablation_piece():
    assert {name for name in FAMILIES if name.startswith("vir-")} >= {
        f"vir-{path.stem}" for path in (CONFIGS / "ablation").glob("*.yaml")
    }
    assert set(FAMILIES["vir-memoryless"]().reservoirs[0].weight.unique().tolist()) == {0.0}  # the piece applied


class Singular(nn.Module):
    """Singular values of each image: an op (SVD) ONNX has no operator for."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svdvals(images.flatten(1, 2))  # (B, min(C·H, W))


def test_an_op_onnx_lacks_fails_with_the_reason_and_leaves_no_file(tmp_path):
    target = tmp_path / "model.onnx"
    with (
        pytest.raises(
            ExportError,
            match=r"ONNX export of Singular failed: DispatchError: No ONNX function found "
            r"for <OpOverload\(op='aten._linalg_svd'",
        ),
        replaced_atomically(target) as partial,
    ):
        export_onnx(Singular(), torch.randn(2, 1, 4, 4), partial)
    assert list(tmp_path.iterdir()) == []


def test_logits_that_differ_or_a_fixed_batch_are_refused_with_the_numbers():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    with pytest.raises(
        ExportError,
        match=r"logits differ from PyTorch's: batch 1: max \|Δlogit\| = 0.001 > 0.0001; "
        r"batch 4: max \|Δlogit\| = 0.001 > 0.0001",
    ):
        check_logits(model, lambda images: model(images) + 1e-3, (1, 2, 2), (1, 4))
    passed = check_logits(model, lambda images: model(images) + 1e-5, (1, 2, 2), (1, 4))
    assert [check.max_abs_difference for check in passed] == pytest.approx([1e-5, 1e-5], rel=1e-2)

    def fixed_batch(images: torch.Tensor) -> torch.Tensor:
        return model(images.reshape(2, 1, 2, 2))

    with pytest.raises(ExportError, match=r"does not run on a batch of 1: "):
        check_logits(model, fixed_batch, (1, 2, 2), (1, 2))


def test_a_failed_write_leaves_the_old_file_and_no_partial(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("old")
    with pytest.raises(ValueError, match="interrupted"), replaced_atomically(target) as partial:
        partial.write_text("half")
        raise ValueError("interrupted")
    assert [path.name for path in tmp_path.iterdir()] == ["model.onnx"] and target.read_text() == "old"
    folder = tmp_path / "model"
    (folder / "old").mkdir(parents=True)
    with replaced_atomically(folder, folder=True) as partial:
        (partial / "new").write_text("whole")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model", "model.onnx"]
    assert [path.name for path in folder.iterdir()] == ["new"]


def portable(tmp_path: Path) -> tuple[nn.Module, Path]:
    model = trained_like(from_configs(options=tuple(TINY_VIR)))
    config = {
        "class_path": "lit_vir.models.ViR",
        "init_args": dict(
            num_classes=10, image_size=8, in_channels=1, num_nodes=32, jump_size=5, embed_dim=16, mlp_dim=32
        ),
    }
    preprocessing = {
        "image_size": 8,
        "in_channels": 1,
        "mean": [0.3],
        "std": [0.4],
        "class_names": list("0123456789"),
        "resize": "center",
    }
    save_portable(tmp_path / "model", model, config, preprocessing, "# card\n")
    return model, tmp_path / "model"


def test_load_model_rebuilds_the_reservoir_and_weights_without_pickle(tmp_path):
    model, folder = portable(tmp_path)
    loaded = lit_vir.load_model(folder)
    images = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    assert torch.equal(loaded.reservoirs[0].weight, model.reservoirs[0].weight)
    assert sorted(path.name for path in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert b"\x80" not in (folder / "config.json").read_bytes()  # JSON, no pickle opcode


def test_load_model_builds_only_lit_vir_models_and_matching_weights(tmp_path):
    _, folder = portable(tmp_path)
    manifest = json.loads((folder / "config.json").read_text())
    with pytest.raises(ExportError, match=r"class_path 'os.system' is not in lit_vir.models"):
        build_backbone({"class_path": "os.system", "init_args": {"command": "echo hacked"}})
    manifest["backbone"]["init_args"]["num_nodes"] = 40
    (folder / "config.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match=r"model.safetensors does not fit the model of config.json"):
        load_model(folder)


def lit_vir_imports(module: Path) -> set[str]:
    tree = ast.parse(module.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    return names


def test_the_export_layer_imports_neither_lightning_nor_the_data_or_training_layers():
    """Every module reachable from lit_vir.export through lit_vir's own imports (packages' __init__ included), read
    from the source."""
    seen, queue, outside = set(), ["lit_vir.export"], set()
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        path = REPO / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        for imported in lit_vir_imports(path):
            parts = imported.split(".")
            if parts[0] == "lit_vir":  # importing a.b.c runs a/__init__ and a/b/__init__ too
                queue += [".".join(parts[:end]) for end in range(1, len(parts) + 1)]
            else:
                outside.add(imported.split(".")[0])
    assert not {"lightning", "pytorch_lightning", "jsonargparse"} & outside
    assert not any(name.startswith(("lit_vir.data", "lit_vir.training", "lit_vir.commands")) for name in seen)
    assert "lit_vir.models" in seen


def test_forward_flops_of_a_linear_layer_are_two_per_multiply_add():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    assert forward_flops(model, torch.zeros(3, 1, 3, 4)) == 2 * 3 * 12 * 5
    assert model.training  # its mode is given back


def test_export_of_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(tmp_path / "none.ckpt"), "--format", "safetensors"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == f"lit-vir: {tmp_path / 'none.ckpt'}: no such checkpoint file."


def test_export_help_lists_the_formats_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--help"])
    shown = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert all(f"--format {name}" in shown for name in ("onnx", "torch_export", "safetensors"))
    assert "examples:\n  lit-vir export --ckpt_path" in shown
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "  export      a checkpoint → ONNX" in capsys.readouterr().out
