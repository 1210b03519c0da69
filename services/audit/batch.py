"""Pure steps of the writer: split a fetched batch into rows and rejects, and pace retries.

A message is stored only when its producer vouches for it: it arrived on the audit subject of a
producer role (`permissions.AUDIT_PRODUCERS`; only that role may publish there), and every event in
it is on a chain of that role (`audit_chain.producer_role`). Anything else (a chain of another
producer, a subject no producer owns, a payload that is no event) is rejected whole, with the
reason, to be dead-lettered. Events that are stored may still be flagged: one naming a key that
does not exist (`known_key`).

No NATS and no ClickHouse here, so the decisions (what is dead-lettered, flagged, how long to back
off) are unit-tested alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError

from libs.common.audit.audit_chain import producer_role
from libs.common.bus.permissions import AUDIT_PRODUCERS
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent, audit_events
from libs.common.contracts.oauth import USER_CALLER_PREFIX

from .errors import BadEvent
from .schema import to_row, to_rows

__all__ = ["UNKNOWN_KEY", "Arrival", "Backoff", "Rejected", "Split", "decode", "decode_many", "split"]

UNKNOWN_KEY: Final = "unknown_key"
"""The flag of an event naming a key id that `bastion_keys` does not hold."""
_UNKNOWN: Final = (UNKNOWN_KEY,)


@dataclass(frozen=True, slots=True)
class Arrival:
    """One fetched message: the subject it was published on and its payload."""

    subject: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    index: int
    """Into the fetched messages."""
    reason: str
    role: str = ""
    """The producer role whose subject it came on ("" for a subject no producer owns)."""
    producer: str = ""
    event_id: str = ""
    """The first offending event, when the payload was one."""


def decode(payload: bytes) -> tuple[Any, ...]:
    """A single-event payload as a table row; `BadEvent` (with a short reason) if it can never be one."""
    try:
        event = AuditEvent.model_validate_json(payload)
    except ValidationError as exc:
        raise BadEvent(_reason("AuditEvent", exc)) from None
    return to_row(event)


def decode_many(payload: bytes) -> list[AuditEvent]:
    """The events of one message, an `AuditBatch` or a single `AuditEvent`; all or nothing."""
    try:
        return audit_events(payload)
    except ValidationError as exc:
        raise BadEvent(_reason("AuditBatch" if b'"events"' in payload else "AuditEvent", exc)) from None


def _reason(model: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "payload"
    return f"not an {model}: {where}: {first['msg']}"


def _unvouched(role: str, events: list[AuditEvent]) -> AuditEvent | None:
    """The first event whose chain is not `role`'s.

    A batch comes from one producer, so nearly always holds one chain: each chain's role is read once,
    not once per event."""
    chains = {event.producer for event in events}
    if all(chain and producer_role(chain) == role for chain in chains):
        return None
    return next((event for event in events if not event.producer or producer_role(event.producer) != role), None)


def _rows(role: str, events: list[AuditEvent], known_key: Callable[[str], bool]) -> list[tuple[Any, ...]]:
    """The events' rows, each flagged when it names a key `bastion_keys` does not hold (a user is no key).

    A batch names few keys: each is checked once, not once per event."""
    flags = {
        key: _UNKNOWN if key and not key.startswith(USER_CALLER_PREFIX) and not known_key(key) else ()
        for key in {event.key_id for event in events}
    }
    return to_rows(events, role, flags)


@dataclass
class Split:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    good: list[int] = field(default_factory=list)
    """Indexes (into the fetched messages) of the messages `rows` came from."""
    bad: list[Rejected] = field(default_factory=list)
    """The messages to dead-letter, with why."""


def _vouched(index: int, arrival: Arrival, known_key: Callable[[str], bool]) -> list[tuple[Any, ...]] | Rejected:
    role = subjects.audit_producer(arrival.subject)
    if role not in AUDIT_PRODUCERS:
        return Rejected(
            index,
            f"published on {arrival.subject}, which no audit producer owns "
            f"(producers publish on {subjects.AUDIT_EVENTS}.<role>.<instance>: {', '.join(AUDIT_PRODUCERS)})",
            role or "",
        )
    try:
        events = decode_many(arrival.payload)
        stranger = _unvouched(role, events)
        if stranger is not None:
            owner = producer_role(stranger.producer) if stranger.producer else ""
            why = (
                f"event {stranger.event_id} is on chain {stranger.producer}, which belongs to {owner or 'no role'}, "
                f"but arrived on {role}'s subject: only {owner or 'a producer'} writes {owner or 'its'} chains"
                if stranger.producer
                else f"event {stranger.event_id} is on no hash chain"
            )
            return Rejected(index, why, role, stranger.producer, stranger.event_id)
        return _rows(role, events, known_key)
    except BadEvent as exc:
        return Rejected(index, str(exc), role)


def split(arrivals: Sequence[Arrival], known_key: Callable[[str], bool] = lambda _key: True) -> Split:
    """Rows of the messages their producer vouches for; the others rejected, whole."""
    result = Split()
    for index, arrival in enumerate(arrivals):
        outcome = _vouched(index, arrival, known_key)
        if isinstance(outcome, Rejected):
            result.bad.append(outcome)
        else:
            result.rows.extend(outcome)
            result.good.append(index)
    return result


@dataclass
class Backoff:
    """Exponential delay between attempts against a failing dependency, reset by a success.

    Not tenacity: there is no call to wrap in a retry loop. Each attempt is another batch, and the delay is
    handed to JetStream (a NAK with it) while the consumer pauses, so the state lives across batches."""

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
