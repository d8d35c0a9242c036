"""MPTQ-ViT rows of different models compared on the same test images: for every (method, precision) that each
`lit-vir quantize` output folder kept in its `quantization_outcomes.npz`, the accuracy difference of each model
against the baseline model, its bootstrap interval and McNemar's exact p (lit_vir.analysis.uncertainty).

    python scripts/quantization_between.py BASELINE_FOLDER OTHER_FOLDER... > between.md

The folders must come from the same data settings (the same first N test images, in the same order); the script
refuses folders with different numbers of test images. A Markdown table goes to stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from lit_vir.analysis.uncertainty import p_text, paired_difference


def outcomes(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "quantization_outcomes.npz") as kept:
        return {key: kept[key] for key in kept.files}


def main(folders: list[Path]) -> None:
    baseline, *others = folders
    reference = outcomes(baseline)
    print(f"Against `{baseline.name}`, on the same test images (McNemar's exact test):\n")
    print("| model | row | accuracy % | baseline % | Δ points [95% CI] | p (McNemar) |")
    print("|---|---|---|---|---|---|")
    for folder in others:
        found = outcomes(folder)
        for key in [key for key in reference if key in found]:
            ours, theirs = found[key], reference[key]
            if ours.shape != theirs.shape:
                raise SystemExit(f"{folder} and {baseline}: {key} has {ours.size} and {theirs.size} test images")
            result = paired_difference([ours], [theirs])
            delta = f"{100 * result.difference:+.2f} [{100 * result.low:+.2f}, {100 * result.high:+.2f}]"
            accuracies = f"{100 * ours.mean():.2f} | {100 * theirs.mean():.2f}"
            print(f"| {folder.name} | {key} | {accuracies} | {delta} | {p_text(result.p)} |")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main([Path(argument) for argument in sys.argv[1:]])
