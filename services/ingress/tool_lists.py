"""Each key's `tools/list` answer, cached: computing it asks policy about every tool of the catalog.

An entry is the encoded tools array (an `orjson.Fragment`, spliced into each answer as it is) with
the revisions it was computed at (catalog, key, policy): a change of any makes it stale at once, as
does age (`_TTL`), which bounds the window in which policy may not have seen a change yet.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from typing import Protocol

import orjson
from cachetools import LRUCache

__all__ = ["ListCache"]

_TTL = 0.5
"""Seconds a key's cached `tools/list` answer may be reused. Changes also invalidate it at once when
ingress sees them; the TTL bounds the window in which policy may not have seen them yet."""
_MAX_BYTES = 64 * 1024 * 1024
"""Bytes of cached `tools/list` answers kept at once, least recently used dropped first: the cache is
keyed by key and narrowing headers, which agents choose."""

_Entry = tuple[tuple[int, ...], float, orjson.Fragment, int, list[int]]
"""(revisions it was computed at, when, the tools array, its size in bytes, the catalog indexes in it)"""


class HasFragment(Protocol):
    @property
    def fragment(self) -> orjson.Fragment: ...


class ListCache:
    def __init__(self, ttl: float = _TTL, max_bytes: int = _MAX_BYTES) -> None:
        self._ttl, self._max_bytes = ttl, max_bytes
        self._entries: LRUCache[Hashable, _Entry] = LRUCache(maxsize=max_bytes, getsizeof=lambda e: e[3] + 256)

    def get(self, key: Hashable, stamp: tuple[int, ...]) -> orjson.Fragment | None:
        """The cached tools array of `key` if it was computed at `stamp` and is young enough."""
        entry = self._entries.get(key)
        if entry is None or entry[0] != stamp or time.monotonic() - entry[1] > self._ttl:
            return None
        return entry[2]

    def put(
        self,
        key: Hashable,
        stamp: tuple[int, ...],
        allowed: list[int],
        tools: Sequence[HasFragment],
        *,
        keep: bool = True,
    ) -> orjson.Fragment:
        """The array of `tools[i]` for each `i` in `allowed` (each already JSON); kept for `key` when
        `keep`, unless it alone would take a quarter of the cache. When policy allowed the same
        tools as last time at the same revisions (the entry had only aged), that array is reused
        instead of encoded again: for a large catalog, a copy of megabytes."""
        previous = self._entries.get(key)
        if previous is not None and previous[0] == stamp and previous[4] == allowed:
            fragment, size = previous[2], previous[3]
        else:
            encoded = orjson.dumps([tools[i].fragment for i in allowed])
            fragment, size = orjson.Fragment(encoded), len(encoded)
        if keep and size < self._max_bytes // 4:
            self._entries[key] = (stamp, time.monotonic(), fragment, size, allowed)
        return fragment
