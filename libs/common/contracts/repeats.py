"""Finding a name given twice, for configuration where each one must be unique."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Protocol, TypeVar

from pydantic import AfterValidator

__all__ = ["first_repeat", "named_once"]

H = TypeVar("H", bound=Hashable)


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)


def first_repeat(values: Iterable[H]) -> H | None:
    """The first value that comes a second time, or None when each comes once."""
    seen: set[H] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None


def named_once(noun: str) -> AfterValidator:
    """A field validator for a list of named items: refused when two share a name (`<noun> name 'x' is used twice`)."""

    def check(items: list[N]) -> list[N]:
        if (twice := first_repeat(item.name for item in items)) is not None:
            raise ValueError(f"{noun} name {twice!r} is used twice")
        return items

    return AfterValidator(check)
