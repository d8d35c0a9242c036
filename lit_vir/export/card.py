"""The model card of an exported model: what it is, what it was trained on, how well and at what cost, and how.

A Markdown page (the folder's README.md) made from facts gathered by the export command: the data the run
trained on and its test accuracy (from the run's own records: nothing is re-measured here), the parameters in the
paper's terms (`lit_vir.models.counting`: trainable, of them frozen, and the reservoirs' fixed W, V, b), the
forward FLOPs of one image, and the command, commit and machine of the training run (its environment.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lit_vir.models.counting import ParameterCount

__all__ = ["ModelCard", "render_card"]


@dataclass(frozen=True)
class ModelCard:
    """The facts on a card; a string field is "not recorded" where the run did not record it."""

    model: str  # e.g. "ViR (lit_vir.models.ViR)"
    checkpoint: str
    dataset: str
    test_accuracy: str
    parameters: ParameterCount
    flops_per_image: int
    preprocessing: dict[str, Any]
    command: str
    commit: str
    trained_on: str
    exported_with: str


def _si(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.3g}"


def render_card(card: ModelCard) -> str:
    pre = card.preprocessing
    names = list(pre["class_names"])
    shown = ", ".join(names[:20]) + (f", … ({len(names)} in all)" if len(names) > 20 else "")
    counts = card.parameters
    rows = [
        ("model", card.model),
        ("trained on", card.dataset),
        ("classes", f"{len(names)}: {shown}"),
        ("test accuracy", card.test_accuracy),
        (
            "parameters",
            f"{counts.trainable:,} trainable ({counts.frozen:,} of them frozen); {counts.fixed:,} fixed "
            "(the reservoirs' W, V, b)",
        ),
        ("FLOPs per image", f"{_si(card.flops_per_image)} (forward, 2 per multiply-add)"),
        ("input", f"{pre['in_channels']} × {pre['image_size']} × {pre['image_size']}, float32"),
        ("training command", f"`{card.command}`"),
        ("commit", f"`{card.commit}`"),
        ("trained on machine", card.trained_on),
        ("exported from", f"`{card.checkpoint}` with {card.exported_with}"),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    mean = ", ".join(f"{value:.4f}" for value in pre["mean"])
    std = ", ".join(f"{value:.4f}" for value in pre["std"])
    resize = {
        "center": f"the shorter side scaled to {pre['image_size']} (bilinear), the centre square cut out",
        "squash": f"both sides scaled to {pre['image_size']} (bilinear)",
    }[pre.get("resize", "center")]
    return f"""# {card.model}

| | |
|---|---|
{table}

## Preparing an image

Decode it, turn it upright by its EXIF orientation, convert it to {pre["in_channels"]} channel(s), resize it
({resize}), scale the pixels to [0, 1] and normalise each channel with mean ({mean}) and std ({std}).
`lit-vir predict` does all of this.

## Loading

```python
import lit_vir
model = lit_vir.load_model("this folder")     # plain PyTorch: no Lightning, no pickled code
logits = model(images)  # (B, {pre["in_channels"]}, {pre["image_size"]}, {pre["image_size"]}) → (B, {len(names)})
```

`model.safetensors` holds every weight and buffer, `config.json` the model's configuration and the preparation
above (`lit_vir.export.read_manifest`).
"""
