"""Stratified, seeded splits of a labelled image list: a validation or test set taken off the training images.

Every class gives its share of the images taken, so a rare class is not left out of a split by chance (what
scikit-learn's `train_test_split(stratify=...)` does). The shares are the largest-remainder rounding of
`total · n_c / n`: they add up to exactly `total`, and each differs from its exact proportion by less than one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from lit_vir.checks import ConfigError

__all__ = ["split_count", "stratified_split"]


def split_count(amount: float, size: int) -> int:
    """Images taken for a split of `amount` — a fraction in (0, 1) or a count ≥ 1 — out of `size`."""
    return round(amount * size) if amount < 1 else int(amount)


def class_shares(counts: Sequence[int], total: int) -> list[int]:
    """`total` divided among classes of `counts` images in proportion, by largest remainder (ties: lower class)."""
    size = sum(counts)
    exact = [total * count / size for count in counts]
    shares = [math.floor(value) for value in exact]
    by_remainder = sorted(range(len(counts)), key=lambda index: (shares[index] - exact[index], index))
    for index in by_remainder[: total - sum(shares)]:
        shares[index] += 1
    return shares


def stratified_split(
    labels: Sequence[int],
    amount: float,
    seed: int,
    *,
    owner: str,
    field: str,
    class_names: Sequence[str],
) -> tuple[list[int], list[int]]:
    """(kept, taken): indices into `labels`, each sorted, with `amount` of the images taken class by class.

    Within a class the images taken are the first of a seeded permutation, so the split depends only on the
    labels, `amount` and `seed`. Raises ConfigError (naming `owner.field`) when the split would be empty or
    would leave a class with no image to keep.
    """
    size = len(labels)
    total = split_count(amount, size)
    if not 0 < total < size:
        raise ConfigError(
            f"{owner}: {field} = {amount} takes {total} of {size} images, leaving {size - total}; both must be at "
            f"least 1. Add images, or give {field} as a fraction that takes at least one image "
            f"(≥ {0.5 / size:.3g} here) and leaves one."
        )
    members: list[list[int]] = [[] for _ in class_names]
    for index, label in enumerate(labels):
        members[label].append(index)
    counts = [len(indices) for indices in members]
    shares = class_shares(counts, total)
    emptied = [name for name, count, share in zip(class_names, counts, shares, strict=True) if 0 < count <= share]
    if emptied:
        raise ConfigError(
            f"{owner}: {field} = {amount} would take every image of class {', '.join(map(repr, emptied[:5]))} "
            f"(its {counts[class_names.index(emptied[0])]} image(s)), leaving none to train on. Add images to "
            f"these classes, lower {field}, or give that split its own images (a folder or a dataset split)."
        )
    generator = torch.Generator().manual_seed(seed)
    kept, taken = [], []
    for indices, share in zip(members, shares, strict=True):
        order = torch.randperm(len(indices), generator=generator).tolist()
        taken += [indices[position] for position in order[:share]]
        kept += [indices[position] for position in order[share:]]
    return sorted(kept), sorted(taken)
