"""Audit emission for every producer.

Never waits on the request path, never loses an event, and no event can stop the ones behind it.

`emit()` cuts the event's text fields to `FieldLimits` (`audit_fields.bounded`, which names what it
cut: a few length checks for an ordinary event) and enqueues it, so a `tools/call` handler pays
nothing more. A background task takes what is queued (waiting at most `linger` seconds for
company) and packs the events into `AuditBatch` messages no larger than the server's max payload. Each batch is
published to JetStream with the header `Nats-Msg-Id` = `batch_id`, so a retried copy is dropped by
the server, and its ack awaited.

What can go wrong, and what happens:

- NATS is down or restarting: nothing is published while the connection is away (retrying into a
  dead connection would only pile copies up in the client's buffer); events wait in the queue,
  which holds `max_queue` of them and `max_bytes` of their text (minutes of traffic), and drops,
  loudly and counted, beyond that.
  Once the connection is back the backlog is published in order.
- A transient failure (no ack in time, the stream not created yet: only its owner, the audit
  service, creates it): the same batch, same id, is retried at once, then with backoff until acked.
- The server refuses a batch for what it is (too large for the stream or the connection): the batch
  is split in two and each half published on its own, down to single events; a single event still
  refused, or one that cannot even be serialized, goes to the dead-letter stream
  (`subjects.AUDIT_DEAD`, the reason in the `Bastion-Dead-Reason` header) and is never retried.

Events are only lost if the queue overflows or the process dies before they were acked; `aclose()`
drains within a bounded time on shutdown. With a `journal` (`audit_journal.AuditJournal`) not even a
killed process loses them: each queued event is written to it, and each acked batch marked there.

Every accepted event is linked on the publisher's hash chain (`audit_chain`) in `emit`, before the
journal writes it down: the journal holds the linked event, so one replayed by the next process
(`AuditJournal.replay`) keeps its place on the chain of the process that emitted it, instead of
leaving a gap there and joining the new chain. An event that already carries a `hash` is such a
replayed one and is queued as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import deque
from collections.abc import Callable, Iterator
from typing import TypeAlias

from nats.aio.client import Client as NATS
from nats.errors import MaxPayloadError
from nats.js.errors import APIError, BadRequestError, NoStreamResponseError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from libs.common.audit.audit_chain import AuditChain, producer_role
from libs.common.audit.audit_fields import FieldLimits, bounded, measured
from libs.common.audit.audit_journal import AuditJournal
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditBatch, AuditEvent, new_id
from libs.common.runtime.patience import patiently, until
from libs.common.runtime.tasks import cancel_and_wait

__all__ = ["AuditPublisher", "FieldLimits"]

log = logging.getLogger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"
DEAD_REASON_HEADER = "Bastion-Dead-Reason"
DEAD_SUBJECT_HEADER = "Bastion-Dead-Subject"
DEAD_EVENT_HEADER = "Bastion-Dead-Event"

_ENVELOPE_ROOM = 4096
"""Bytes of a message kept for headers and the batch envelope around the events."""
_BAD_REQUEST = 400
"""JetStream's status for a message refused for what it is (too large for the stream, ...)."""
_DEAD_PAYLOAD = 64 * 1024
"""Largest dead letter: a refused event is kept with its fields cut further when larger."""
_SHARE = 512
"""Bytes an event held in memory counts for besides its text (`audit_fields.measured`): the rest, roughly."""


_Queued: TypeAlias = tuple[AuditEvent, bytes | None, int]
"""An event emitted and not taken yet: the event; what the chain (or the journal) wrote it as (None:
serialized when published); what it adds to the bytes held until it is acked (its text plus `_SHARE`).
A plain tuple, as `_Encoded`: made per event, where a class's `__init__` would be one Python call more."""
_Encoded: TypeAlias = tuple[AuditEvent, bytes]
"""An event taken for publishing and its JSON."""


def _unpublishable(error: BaseException) -> bool:
    """True when the server will refuse this very message again however often it is retried."""
    if isinstance(error, MaxPayloadError | BadRequestError):
        return True
    return isinstance(error, APIError) and not isinstance(error, NoStreamResponseError) and error.code == _BAD_REQUEST


def _why(error: BaseException) -> str:
    """A failed publish, said for the log: a missing stream is its owner's to create."""
    if isinstance(error, NoStreamResponseError):
        return f"no stream takes {subjects.AUDIT_EVENTS}.> yet: the audit service creates it when it starts"
    return repr(error)


def _describe(error: BaseException) -> str:
    if isinstance(error, APIError):
        return f"{error.description or type(error).__name__} (status {error.code}, error code {error.err_code})"
    return str(error) or type(error).__name__


class AuditPublisher:
    def __init__(
        self,
        nc: NATS,
        *,
        limits: FieldLimits | None = None,
        max_queue: int = 100_000,
        max_bytes: int = 256 * 1024 * 1024,
        max_batch: int = 500,
        linger: float = 0.005,
        publish_timeout: float = 5.0,
        max_backoff: float = 2.0,
        producer: str,
        journal: AuditJournal | None = None,
    ) -> None:
        self._nc = nc
        self.chain = AuditChain(producer)
        """This process's hash chain (`audit_chain.producer_id`: named after the producer's bus role);
        events are linked in `emit`, in publishing order."""
        self.subject = subjects.audit_subject(producer_role(producer), producer)
        """Where the events go: the role's own subject, which only that role may publish."""
        self._journal = journal
        self._js = nc.jetstream()
        self._limits = limits or FieldLimits()
        self._waiting: deque[_Queued] = deque()
        """Events emitted and not yet taken by the publishing task: a deque and one wake-up per batch, not an
        `asyncio.Queue`, whose put and get make ~12 Python calls per event (every emit is on the loop's thread)."""
        self._max_queue = max_queue if max_queue > 0 else sys.maxsize
        self._wake: asyncio.Future[None] | None = None
        """Set while the publishing task waits for a first event; the emit that brings one resolves it."""
        self._batch_done: asyncio.Future[None] | None = None
        """Set while `aclose` waits for the queue to drain; resolved after each batch."""
        self._max_batch = max_batch
        self._linger = linger
        self._timeout = publish_timeout
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._unacked = 0
        """Events taken off the queue whose publish has not been acked (or dead-lettered) yet."""
        self._max_bytes = max_bytes
        self._held_bytes = 0
        """Approximate memory of the events emitted and not yet acked (their text)."""
        self.published = 0
        self.dropped = 0
        self.dead_lettered = 0
        self.holding = False
        """True while NATS is unreachable and events wait in memory for it."""

    @property
    def pending(self) -> int:
        """Events emitted but not yet acked by JetStream."""
        return len(self._waiting) + self._unacked

    def emit(self, event: AuditEvent) -> bool:
        """Link `event` on the chain and enqueue it for publishing.

        Returns False (and logs) if it had to be dropped (then it is not linked: a dropped event leaves
        no gap in the chain)."""
        if self._closed:
            self._drop("publisher closed", event)
            return False
        event, text = measured(event, self._limits)
        weight = _SHARE + text
        if self._held_bytes + weight > self._max_bytes:
            self._drop(f"buffer full: {self._held_bytes:,} bytes of events wait for NATS", event)
            return False
        if len(self._waiting) >= self._max_queue:
            self._drop(f"buffer full: {self._max_queue} events wait for NATS", event)
            return False
        json: bytes | None = None
        if not event.hash:  # a replayed event is already on its own producer's chain
            try:
                event, json = self.chain.link_encoded(event)
            except Exception as exc:  # e.g. a lone surrogate in a string: no JSON can carry it
                log.warning("audit: event %s cannot be hashed (%s); it is dead-lettered", event.event_id, exc)
        if self._journal is not None:
            json = self._journal.emitted(event, json)
        self._waiting.append((event, json, weight))
        self._held_bytes += weight
        wake = self._wake
        if wake is not None:
            self._wake = None
            if not wake.done():
                wake.set_result(None)
        return True

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="audit-publisher")

    async def aclose(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a drain bound, not a scope
        """Stop accepting events and publish what is queued, for at most `timeout` seconds."""
        self._closed = True
        if self._task is None:
            return
        if not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), timeout)
        await cancel_and_wait(self._task)
        if self.pending:
            log.error("audit: %d event(s) not published before shutdown", self.pending)

    async def __aenter__(self) -> AuditPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _drop(self, why: str, event: AuditEvent) -> None:
        self.dropped += 1
        if self._journal is not None:
            self._journal.dropped(event.event_id)
        if self.dropped & (self.dropped - 1) == 0:  # 1st, 2nd, 4th, 8th...: loud but not a log flood
            log.error("audit: dropped event %s (%s); %d dropped so far", event.event_id, why, self.dropped)

    # ------------------------------------------------------------------ the background task

    async def _run(self) -> None:
        while True:
            queued = await self._next_events()
            self._unacked = len(queued)
            encoded: list[_Encoded] = []
            for event, json, _ in queued:
                try:
                    encoded.append((event, json or event.model_dump_json().encode()))
                except Exception as exc:  # e.g. a lone surrogate in a string: no JSON can carry it
                    reason = f"cannot be serialized: {type(exc).__name__}: {exc}"
                    await self._dead_letter(event, b"", reason)
            for batch_id, part in self._pack(encoded):
                await self._deliver(batch_id, part)
            self._unacked = 0
            if self._journal is not None:
                self._journal.acked(len(queued))
            for _, _, weight in queued:
                self._held_bytes -= weight
            done = self._batch_done
            if done is not None and not done.done():
                done.set_result(None)

    async def _next_events(self) -> list[_Queued]:
        waiting = self._waiting
        while not waiting:
            self._wake = asyncio.get_running_loop().create_future()
            await self._wake
        if self._linger > 0 and len(waiting) < self._max_batch and not self._closed:
            await asyncio.sleep(self._linger)  # let the calls in flight join this batch
        take = min(len(waiting), self._max_batch)
        return [waiting.popleft() for _ in range(take)]

    async def _drained(self) -> None:
        """Until every event emitted has been published (or dead-lettered): what `aclose` waits for."""
        while self._waiting or self._unacked:
            if self._batch_done is None or self._batch_done.done():  # one future, however many wait
                self._batch_done = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._batch_done)

    def _pack(self, encoded: list[_Encoded]) -> Iterator[tuple[str, list[_Encoded]]]:
        """Consecutive runs of events whose batch fits one message of the connection's max payload."""
        budget = max(self._nc.max_payload - _ENVELOPE_ROOM, 1)
        part: list[_Encoded] = []
        size = 0
        for item in encoded:
            length = len(item[1]) + 1
            if part and size + length > budget:
                yield new_id(), part
                part, size = [], 0
            part.append(item)
            size += length
        if part:
            yield new_id(), part

    async def _deliver(self, batch_id: str, part: list[_Encoded]) -> None:
        """Publish `part` as one batch until acked; split it when the server refuses it for its content."""
        payload = _batch_json(batch_id, part)
        headers = {MSG_ID_HEADER: batch_id}
        try:  # the first attempt without tenacity, whose machinery costs ~20 µs a batch: nearly all pass
            await self._connected()
            await self._js.publish(self.subject, payload, timeout=self._timeout, headers=headers)
        except Exception as error:
            if _unpublishable(error):
                await self._refused(batch_id, part, error)
                return
            log.warning("audit: publishing %d event(s) failed (%s); retrying", len(part), _why(error))
        else:
            self.published += len(part)
            return

        def warn(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            why = _why(error) if error is not None else "no answer"
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning("audit: publishing %d event(s) failed (%s); retrying in %.2fs", len(part), why, wait)

        try:  # the same batch id: a copy the server got after all is dropped as a duplicate
            async for attempt in self._patiently(warn):
                with attempt:
                    await self._connected()
                    await self._js.publish(self.subject, payload, timeout=self._timeout, headers=headers)
        except Exception as error:  # only what `_unpublishable` says no retry will fix
            await self._refused(batch_id, part, error)
            return
        self.published += len(part)

    def _patiently(self, before_sleep: Callable[[RetryCallState], None] | None = None) -> AsyncRetrying:
        """Retries of a publish while the error is one that passes (NATS away, no stream leader yet)."""
        # a cancellation is an exception to tenacity too: never retried, always re-raised
        passing = retry_if_exception(lambda error: isinstance(error, Exception) and not _unpublishable(error))
        return patiently(most=self._max_backoff, retry=passing, before_sleep=before_sleep)

    async def _refused(self, batch_id: str, part: list[_Encoded], error: BaseException) -> None:
        if len(part) > 1:
            half = len(part) // 2
            log.warning("audit: a batch of %d event(s) was refused (%s); splitting it", len(part), _describe(error))
            # derived ids: a retry of either half is still deduplicated by the server
            await self._deliver(f"{batch_id}.0", part[:half])
            await self._deliver(f"{batch_id}.1", part[half:])
            return
        event, json = part[0]
        await self._dead_letter(event, json, f"refused by NATS: {_describe(error)}")

    async def _dead_letter(self, event: AuditEvent, payload: bytes, reason: str) -> None:
        """Keep `event` in the dead-letter stream for a person to look at.

        Retried only while NATS is unreachable, so it never holds up the events behind it for long."""
        if not payload or len(payload) > min(_DEAD_PAYLOAD, self._nc.max_payload - _ENVELOPE_ROOM):
            payload = _smallest(event)
        headers = {
            MSG_ID_HEADER: f"dead-{event.event_id}",
            DEAD_REASON_HEADER: " ".join(reason.split())[:512],
            DEAD_SUBJECT_HEADER: self.subject,
            DEAD_EVENT_HEADER: event.event_id[:128],
        }
        try:
            async for attempt in self._patiently():
                with attempt:
                    await self._connected()
                    await self._js.publish(subjects.AUDIT_DEAD, payload, timeout=self._timeout, headers=headers)
        except Exception as error:  # refused for good
            self._drop(f"{reason}; and the dead-letter stream refused it too: {_describe(error)}", event)
            return
        self.dead_lettered += 1
        log.error("audit: event %s dead-lettered to %s: %s", event.event_id, subjects.AUDIT_DEAD, reason)

    async def _connected(self) -> None:
        """Return once the connection is up; while NATS is away, events wait in the queue."""
        if self._nc.is_connected:
            return
        log.warning("audit: NATS unreachable; holding %d event(s), at most %d", self.pending, self._max_queue)
        self.holding = True
        await until(lambda: self._nc.is_connected, most=self._max_backoff)
        self.holding = False
        log.warning("audit: NATS is back; publishing %d held event(s)", self.pending)


def _batch_json(batch_id: str, part: list[_Encoded]) -> bytes:
    """An `AuditBatch` message built from events already serialized (each was, to measure it)."""
    envelope = AuditBatch(batch_id=batch_id, events=[]).model_dump_json().encode()
    assert envelope.endswith(b"[]}")
    return envelope[:-2] + b",".join([json for _, json in part]) + b"]}"


def _smallest(event: AuditEvent) -> bytes:
    """The event with every field cut hard, and any text JSON cannot carry (a lone surrogate) replaced.

    What a dead letter keeps when the event would not fit or not serialize."""
    fields = {
        k: v.encode("utf-8", "replace").decode() if isinstance(v, str) else v for k, v in event.model_dump().items()
    }
    return (
        bounded(AuditEvent.model_validate(fields), FieldLimits(text=256, error=1024, content=1024))
        .model_dump_json()
        .encode()
    )
