"""The one place where network constructor arguments are checked (ConvLSTM, generator, discriminator).

Every check raises ``ValueError("<owner>: <name> must be ..., got <value>")`` so that a wrong argument is reported
with the class it was given to and the offending value, never as a shape error deep inside a forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(owner: str, name: str, value: object) -> int:
    """``value`` if it is an int > 0 (bools rejected), else ``ValueError`` naming ``owner`` and ``name``."""
    if not _is_int(value) or value <= 0:  # type: ignore[operator]
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return value  # type: ignore[return-value]


def odd_kernel_size(owner: str, value: object) -> int:
    """A positive odd kernel size (odd keeps the in-plane size with ``padding = k // 2``)."""
    size = positive_int(owner, "kernel_size", value)
    if size % 2 == 0:
        raise ValueError(f"{owner}: kernel_size must be odd to keep the in-plane size, got {size}")
    return size


def positive_int_sequence(owner: str, name: str, values: object) -> tuple[int, ...]:
    """A non-empty sequence of positive ints as a tuple (one entry per level / block)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{owner}: {name} must be a sequence of positive ints, got {values!r}")
    widths = tuple(values)
    if len(widths) == 0:
        raise ValueError(f"{owner}: {name} must name at least one level, got an empty sequence")
    bad = [w for w in widths if not _is_int(w) or w <= 0]
    if bad:
        raise ValueError(f"{owner}: {name} must be positive ints, got {widths!r} (bad: {bad!r})")
    return widths


def probability(owner: str, name: str, value: object) -> float:
    """A float in ``[0, 1)`` (e.g. a dropout rate)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{owner}: {name} must be a probability in [0, 1), got {value!r}")
    return float(value)


def choice(owner: str, name: str, value: object, allowed: Sequence[str]) -> str:
    """One of ``allowed`` (e.g. a ConvLSTM implementation name)."""
    if value not in allowed:
        raise ValueError(f"{owner}: {name} must be one of {tuple(allowed)}, got {value!r}")
    return value  # type: ignore[return-value]
