"""A trained model as one folder that plain PyTorch can load: no Lightning, no pickled code.

    model.safetensors   every weight and buffer of the backbone (a ViR's fixed W, V and b included)
    config.json         the backbone's `class_path` and `init_args` (as `lit-vir fit` built it), and how it reads
                        images: class names, image size, channels, mean, std, resize (`Preprocessing`)
    README.md           the model card (`lit_vir.export.card`)

`load_model(folder)` builds the backbone from config.json — only a class or preset of `lit_vir.models`, so
loading imports nothing else — and fills it from model.safetensors, which holds tensors only: loading a model
never runs code stored in the files (unlike unpickling a checkpoint).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import safetensors.torch
from torch import nn

import lit_vir
from lit_vir.export.verify import ExportError

__all__ = ["CONFIG", "FORMAT", "WEIGHTS", "build_backbone", "load_model", "read_manifest", "save_portable"]

FORMAT = "lit_vir.portable"
FORMAT_VERSION = 1
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
MODELS = "lit_vir.models"


def save_portable(
    folder: str | Path, backbone: nn.Module, backbone_config: dict[str, Any], preprocessing: dict[str, Any], card: str
) -> None:
    """Write the three files into `folder` (made if missing). `lit-vir export` writes into a temporary folder and
    renames it into place once `load_model` has reproduced the logits (`lit_vir.atomic.replaced_atomically`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lit_vir": lit_vir.__version__,
        "backbone": backbone_config,
        "preprocessing": preprocessing,
    }
    safetensors.torch.save_model(backbone, str(folder / WEIGHTS), metadata={"format": "pt"})
    (folder / CONFIG).write_text(json.dumps(manifest, indent=2) + "\n")
    (folder / CARD).write_text(card)


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """config.json of a portable folder: `backbone` (class_path, init_args) and `preprocessing`."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise ExportError(f"{folder}: no {CONFIG}; not a folder written by `lit-vir export --format safetensors`.")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT or manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ExportError(
            f"{path}: format {manifest.get('format')!r} version {manifest.get('format_version')!r}; this lit_vir "
            f"reads {FORMAT!r} up to version {FORMAT_VERSION}."
        )
    return manifest


def build_backbone(config: dict[str, Any]) -> nn.Module:
    """The model of `{"class_path": "lit_vir.models.X", "init_args": {...}}`, freshly initialised. A timm model is
    built without downloading pretrained weights (the folder's weights replace them)."""
    class_path = str(config.get("class_path", ""))
    module_name, _, name = class_path.rpartition(".")
    if module_name != MODELS and not module_name.startswith(f"{MODELS}."):
        raise ExportError(f"class_path {class_path!r} is not in {MODELS}: a portable model is built only from those.")
    constructor = getattr(importlib.import_module(module_name), name, None)
    if not callable(constructor):
        raise ExportError(f"class_path {class_path!r}: {module_name} has no model {name!r}.")
    init_args = dict(config.get("init_args") or {})
    if "pretrained" in init_args:
        init_args["pretrained"] = False
    return constructor(**init_args)


def load_model(folder: str | Path, device: str = "cpu") -> nn.Module:
    """The backbone saved in `folder` by `lit-vir export --format safetensors`, in evaluation mode, on `device`;
    images (B, C, H, W) → logits (B, classes). How to prepare images: `read_manifest(folder)["preprocessing"]`."""
    manifest = read_manifest(folder)
    model = build_backbone(manifest["backbone"])
    try:
        safetensors.torch.load_model(model, str(Path(folder) / WEIGHTS), strict=True, device=device)
    except RuntimeError as error:
        raise ExportError(f"{folder}: {WEIGHTS} does not fit the model of {CONFIG}: {error}") from None
    return model.to(device).eval()
