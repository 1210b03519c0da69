"""Each key's `tools/list` answer, cached: computing it asks policy about every tool of the catalog.

An entry is the encoded tools array (an `orjson.Fragment`, spliced into each answer as it is) with
the revisions it was computed at (catalog, key, policy): a change of any makes it stale at once.
An answer policy gave from a view at least as new as ingress's (`VisibleTools.revisions`) holds
until then; one it may have given before it saw a change ingress has seen lives `_TTL` at most.

The arrays themselves are shared: one catalog revision and one set of allowed tools always encode
to the same bytes, so every key (and narrowing) that may use the same tools, and every aged entry
policy confirms unchanged, reuses one array instead of encoding megabytes again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable, Mapping, Sequence
from typing import Protocol

import orjson
from cachetools import LRUCache

__all__ = ["ListCache", "answer_holds"]

_TTL = 0.5
"""Seconds a cached `tools/list` answer may be reused when policy's view may have been older than
ingress's (it had not applied a change ingress had seen): the window in which it may be stale."""
_MAX_BYTES = 64 * 1024 * 1024
"""Bytes of cached `tools/list` answers kept at once, least recently used dropped first: the cache is
keyed by key and narrowing headers, which agents choose."""
_ENTRY_BYTES = 16 * 1024 * 1024
"""Bytes of per-key entries kept at once: an entry names its shared array by the indexes in it
(8 bytes a tool), so a 1,343-tool answer costs ~11 kB a key, not its 1.7 MB."""

_Shared = tuple[int, tuple[int, ...]]
"""(catalog revision, the catalog indexes in the array): what names one encoded tools array"""
_Entry = tuple[tuple[int, ...], float, _Shared]
"""(revisions it was computed at, when it expires, its array's name)"""
_Array = tuple[orjson.Fragment, int]
"""(an encoded tools array, its size in bytes)"""


class HasFragment(Protocol):
    @property
    def fragment(self) -> orjson.Fragment: ...


class ListCache:
    def __init__(self, ttl: float = _TTL, max_bytes: int = _MAX_BYTES, entry_bytes: int = _ENTRY_BYTES) -> None:
        self._ttl, self._max_bytes = ttl, max_bytes
        self._entries: LRUCache[Hashable, _Entry] = LRUCache(
            maxsize=entry_bytes, getsizeof=lambda entry: 8 * len(entry[2][1]) + 256
        )
        self._arrays: LRUCache[_Shared, _Array] = LRUCache(maxsize=max_bytes, getsizeof=lambda array: array[1] + 256)

    def get(self, key: Hashable, stamp: tuple[int, ...]) -> orjson.Fragment | None:
        """The cached tools array of `key` if it was computed at `stamp` and has not expired."""
        entry = self._entries.get(key)
        if entry is None or entry[0] != stamp or time.monotonic() > entry[1]:
            return None
        array = self._arrays.get(entry[2])
        return None if array is None else array[0]

    def put(
        self,
        key: Hashable,
        stamp: tuple[int, ...],
        allowed: list[int],
        tools: Sequence[HasFragment],
        *,
        keep: bool = True,
        lasting: bool = False,
    ) -> orjson.Fragment:
        """The array of `tools[i]` for each `i` in `allowed`.

        (Each already JSON), `tools` being the catalog at revision `stamp[0]`; kept for `key` when
        `keep`, unless it alone would take a quarter of the cache: while `stamp` holds when `lasting`
        (policy answered from a view as new as the stamp's), else for the TTL."""
        shared = (stamp[0], tuple(allowed))
        array = self._arrays.get(shared)
        if array is None:
            encoded = orjson.dumps([tools[i].fragment for i in allowed])
            array = (orjson.Fragment(encoded), len(encoded))
            if keep and array[1] < self._max_bytes // 4:
                self._arrays[shared] = array
        if keep and shared in self._arrays:
            expires = math.inf if lasting else time.monotonic() + self._ttl
            self._entries[key] = (stamp, expires, shared)
        return array[0]


def answer_holds(seen: Mapping[str, int], answered_at: Mapping[str, int]) -> bool:
    """Whether policy's answer holds until ingress sees a change.

    Policy had applied every bucket revision ingress had seen when it asked (`seen`, bucket -> revision).
    If not, policy may have answered before applying a change ingress already keys its cache on. Nothing
    seen: unknown."""
    return bool(seen) and all(answered_at.get(bucket, -1) >= revision for bucket, revision in seen.items())
