"""Pure steps of the writer: split a fetched batch into rows and rejects, and pace retries.

No NATS and no ClickHouse here, so the decisions (what is dead-lettered, how long to back off)
are unit-tested alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from libs.common.messages import AuditEvent, audit_events

from .errors import BadEvent
from .schema import to_row

__all__ = ["Backoff", "Split", "decode", "decode_many", "split"]


def decode(payload: bytes) -> tuple[Any, ...]:
    """A single-event payload as a table row; `BadEvent` (with a short reason) if it can never be one."""
    try:
        event = AuditEvent.model_validate_json(payload)
    except ValidationError as exc:
        raise BadEvent(_reason("AuditEvent", exc)) from None
    return to_row(event)


def decode_many(payload: bytes) -> list[tuple[Any, ...]]:
    """The rows of one message, an `AuditBatch` or a single `AuditEvent`; all or nothing."""
    if b'"events"' not in payload:
        return [decode(payload)]
    try:
        events = audit_events(payload)
    except ValidationError as exc:
        raise BadEvent(_reason("AuditBatch", exc)) from None
    return [to_row(event) for event in events]


def _reason(model: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "payload"
    return f"not an {model}: {where}: {first['msg']}"


@dataclass
class Split:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    good: list[int] = field(default_factory=list)
    """Indexes (into the fetched messages) of the messages `rows` came from."""
    bad: list[tuple[int, str]] = field(default_factory=list)
    """(index, reason) of the messages to dead-letter."""


def split(payloads: Sequence[bytes]) -> Split:
    result = Split()
    for index, payload in enumerate(payloads):
        try:
            rows = decode_many(payload)
        except BadEvent as exc:
            result.bad.append((index, str(exc)))
        else:
            result.rows.extend(rows)
            result.good.append(index)
    return result


@dataclass
class Backoff:
    """Exponential delay between attempts against a failing dependency, reset by a success."""

    initial: float = 0.2
    maximum: float = 5.0
    factor: float = 2.0
    _next: float = field(default=0.0, init=False)

    def next(self) -> float:
        delay = self._next or self.initial
        self._next = min(self.maximum, delay * self.factor)
        return delay

    def reset(self) -> None:
        self._next = 0.0
