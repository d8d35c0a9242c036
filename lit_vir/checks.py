"""Argument checks shared by the models: an error names the field, the value seen and what is allowed.

They run in constructors, so a bad config fails when the CLI instantiates the model — before any
data is read or any step is taken.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ConfigError",
    "check_choice",
    "check_counts",
    "check_divides",
    "check_probabilities",
    "check_range",
    "find_config_error",
]


class ConfigError(ValueError):
    """A configuration value outside what the model or data accepts."""


def find_config_error(error: BaseException | None) -> ConfigError | None:
    """The ConfigError behind `error`, following the chain of causes (jsonargparse wraps it)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ConfigError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def check_range(
    owner: str,
    field: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    hint: str = "",
) -> None:
    """Raise ConfigError unless `low (≤|<) value (≤|<) high`."""
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if not (too_low or too_high):
        return
    left = "-inf" if low is None else f"{low}"
    right = "inf" if high is None else f"{high}"
    interval = f"{'[' if low_inclusive and low is not None else '('}{left}, {right}" + (
        "]" if high_inclusive and high is not None else ")"
    )
    message = f"{owner}: {field} = {value!r} is outside the allowed range {interval}."
    raise ConfigError(f"{message} {hint}".strip())


def check_counts(owner: str, **counts: int) -> None:
    """Raise ConfigError unless every count is ≥ 1: the sizes a backbone takes from the datamodule
    (`num_classes`, `image_size`, `in_channels`) and the widths, depths and head counts of a network."""
    for field, value in counts.items():
        check_range(owner, field, value, low=1)


def check_probabilities(owner: str, **probabilities: float) -> None:
    """Raise ConfigError unless every dropout or stochastic-depth probability p is in [0, 1): at p = 1 every
    unit or branch would be dropped, and the kept ones are scaled by 1/(1 − p)."""
    for field, value in probabilities.items():
        check_range(owner, field, value, low=0, high=1, high_inclusive=False)


def check_choice(owner: str, field: str, value: str, choices: Iterable[str]) -> None:
    """Raise ConfigError unless `value` is one of `choices`."""
    allowed = tuple(choices)
    if value not in allowed:
        raise ConfigError(f"{owner}: {field} = {value!r} is not one of {', '.join(map(repr, allowed))}.")


def check_divides(owner: str, field: str, divisor: int, total: int, total_name: str) -> None:
    """Raise ConfigError unless `divisor` divides `total` (patch sizes must tile the image)."""
    if divisor <= 0 or total % divisor != 0:
        raise ConfigError(
            f"{owner}: {field} = {divisor} does not divide {total_name} = {total}; "
            f"choose one of {[d for d in range(1, total + 1) if total % d == 0]}."
        )
