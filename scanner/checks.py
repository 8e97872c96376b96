"""Value checks the config sections share: each raises ValueError saying what is wrong.

The section parsers (config.py, alerts/settings.py, capture/settings.py,
daemon.py) put the file and key in front of the message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def whole(lo: int, hi: int, unit: str = "") -> Callable[[Any], int]:
    """A whole number in [lo, hi] (a TOML bool is not a number)."""
    what = f"a whole number of {unit}" if unit else "a whole number"

    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"must be {what} from {lo} to {hi}")
        return v

    return check


def each(
    item: Callable[[Any], T], message: str = "must be a list"
) -> Callable[[Any], tuple[T, ...]]:
    """A list whose every element passes `item`; errors name the element's index."""

    def check(v: Any) -> tuple[T, ...]:
        if not isinstance(v, list):
            raise ValueError(message)
        out = []
        for i, element in enumerate(v):
            try:
                out.append(item(element))
            except ValueError as exc:
                raise ValueError(f"[{i}] {exc}") from None
        return tuple(out)

    return check
