"""The key ids the writer checks events against: what `bastion_keys` holds, kept by a KV watch.

A key deleted while this process runs stays known (its late events were made while it existed);
one deleted before it started is unknown, and its late events are flagged, never refused: a flag
asks a person to look, it loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["KnownKeys"]


class KnownKeys:
    def __init__(self) -> None:
        self._ids: set[str] = set()

    def put(self, key_id: str, value: bytes, revision: int) -> None:
        del value, revision  # the record's content does not matter here: that it exists does
        self._ids.add(key_id)

    def delete(self, key_id: str) -> None:
        del key_id  # still known: see the module's docstring

    def __call__(self, key_id: str) -> bool:
        return key_id in self._ids

    @property
    def knows(self) -> Callable[[str], bool]:
        """`self(key_id)` as the key set's own (C) membership test: no Python frame per event checked."""
        return self._ids.__contains__
