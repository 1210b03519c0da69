"""Policy decisions ingress reuses (`messages.Grant`).

A caller's next calls of a tool policy let it call with nothing to count go straight to an executor, one
hop and one decision fewer.

A grant is kept only when policy had applied every keys/policy change ingress had seen when it
asked (`tool_lists.answer_holds`), and used only while ingress has seen no change since and
`_MARGIN` seconds remain before it expires: a revoked key, a narrowed grant or a new budget stops
its reuse as soon as ingress sees the change, and the executor refuses a grant past its expiry
whatever ingress thinks (the request then goes to policy).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Protocol

from pydantic import ValidationError

from libs.common.contracts import subjects
from libs.common.contracts.messages import Caller, Grant, RoutedHead
from services.ingress.catalog.tool_lists import answer_holds

__all__ = ["GrantCache", "Held", "Watched"]

_MARGIN = 0.5
"""Seconds before its expiry a grant is no longer sent: it must still hold when an executor reads it."""

_Key = tuple[object, ...]


class Watched(Protocol):
    """A KV watch as far as grants care (`kvwatch.BucketWatch`)."""

    @property
    def bucket(self) -> str: ...

    @property
    def revision(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Held:
    grant: Grant
    headers: dict[str, str]
    """What a call sent on it carries: the grant itself, and its price (`CHARGED_USD`)."""
    seen: tuple[int, ...]
    """The revisions of `GrantCache.inputs` when it was asked for."""


_caller_values = attrgetter(*Caller.model_fields)
_revision = attrgetter("revision")


def _key(kind: str, head: RoutedHead) -> _Key:
    """`(kind, *head.decision())`, built without its generator and property (a test holds them equal)."""
    servers, tools = head.include_servers, head.include_tools
    return (
        kind,
        _caller_values(head.caller),
        head.server,
        head.tool or head.target or "",
        tuple(servers) if servers is not None else None,
        tuple(tools) if tools is not None else None,
    )


class GrantCache:
    def __init__(self, inputs: Sequence[Watched] = (), max_entries: int = 10_000) -> None:
        self.inputs = inputs
        """The keys and policy watches: a grant holds while their revisions stay as they were."""
        self._max = max_entries
        self._held: dict[_Key, Held] = {}

    def __len__(self) -> int:
        return len(self._held)

    def seen(self) -> tuple[int, ...]:
        return tuple(map(_revision, self.inputs))  # asked on every call: no generator to resume per input

    def find(self, kind: str, head: RoutedHead) -> Held | None:
        """The grant to send `head` with, if one holds."""
        key = _key(kind, head)
        held = self._held.get(key)
        if held is None:
            return None
        if held.seen != self.seen() or time.time() >= held.grant.expires - _MARGIN:
            del self._held[key]
            return None
        return held

    def keep(self, kind: str, head: RoutedHead, header: str, seen: tuple[int, ...]) -> None:
        """Remember policy's grant (`header`) for requests like `head`, asked with `seen` revisions."""
        try:
            grant = Grant.model_validate_json(header)
        except ValidationError:
            return
        asked = {watch.bucket: revision for watch, revision in zip(self.inputs, seen, strict=True)}
        if not answer_holds(asked, grant.revisions):
            return
        headers = {subjects.GRANT: header}
        if grant.price is not None:
            headers[subjects.CHARGED_USD] = repr(grant.price)
        key = _key(kind, head)
        self._held.pop(key, None)
        if len(self._held) >= self._max:
            del self._held[next(iter(self._held))]  # the oldest
        self._held[key] = Held(grant, headers, seen)

    def drop(self, kind: str, head: RoutedHead) -> None:
        self._held.pop(_key(kind, head), None)
