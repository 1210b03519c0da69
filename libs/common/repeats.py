"""Finding a name given twice, for configuration where each one must be unique."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import TypeVar

__all__ = ["first_repeat"]

H = TypeVar("H", bound=Hashable)


def first_repeat(values: Iterable[H]) -> H | None:
    """The first value that comes a second time, or None when each comes once."""
    seen: set[H] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None
