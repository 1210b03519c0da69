"""Audit emission for every producer: never waits on the request path, never loses an event.

`emit()` only enqueues (bounded), so a `tools/call` handler pays a `put_nowait` and nothing else.
A background task gathers what is queued (waiting at most `linger` seconds for company) into one
`AuditBatch` message, publishes it to JetStream and awaits the ack: under load one publish and one
ack carry hundreds of events instead of four NATS messages per event. A failed publish (NATS down
or restarting, stream not ready) is retried with backoff until acked, with the header
`Nats-Msg-Id` = `batch_id` so the server drops the copy a retry may produce. Events are only lost
if the queue overflows (logged) or the process dies before they were acked; `aclose()` drains
within a bounded time on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError

from . import subjects
from .messages import AuditBatch, AuditEvent
from .nats import ensure_audit_stream

__all__ = ["AuditPublisher"]

log = logging.getLogger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"


class AuditPublisher:
    def __init__(
        self,
        js: JetStreamContext,
        *,
        max_queue: int = 100_000,
        max_batch: int = 500,
        linger: float = 0.005,
        publish_timeout: float = 5.0,
        max_backoff: float = 2.0,
    ) -> None:
        self._js = js
        self._queue: asyncio.Queue[AuditEvent] = asyncio.Queue(max_queue)
        self._max_batch = max_batch
        self._linger = linger
        self._timeout = publish_timeout
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._unacked = 0
        """Events taken off the queue whose publish has not been acked yet."""
        self.published = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Events emitted but not yet acked by JetStream."""
        return self._queue.qsize() + self._unacked

    def emit(self, event: AuditEvent) -> bool:
        """Enqueue `event` for publishing; returns False (and logs) if it had to be dropped."""
        if self._closed:
            self._drop("publisher closed", event)
            return False
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._drop("queue full", event)
            return False
        return True

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="audit-publisher")

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop accepting events and publish what is queued, for at most `timeout` seconds."""
        self._closed = True
        if self._task is None:
            return
        if not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self.pending:
            log.error("audit: %d event(s) not published before shutdown", self.pending)

    async def __aenter__(self) -> AuditPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _drop(self, why: str, event: AuditEvent) -> None:
        self.dropped += 1
        if self.dropped & (self.dropped - 1) == 0:  # 1st, 2nd, 4th, 8th...: loud but not a log flood
            log.error("audit: dropped event %s (%s); %d dropped so far", event.event_id, why, self.dropped)

    async def _next_batch(self) -> AuditBatch:
        events = [await self._queue.get()]
        if self._linger > 0 and self._queue.qsize() < self._max_batch and not self._closed:
            await asyncio.sleep(self._linger)  # let the calls in flight join this batch
        while len(events) < self._max_batch and not self._queue.empty():
            events.append(self._queue.get_nowait())
        return AuditBatch(events=events)

    async def _run(self) -> None:
        with contextlib.suppress(Exception):
            await ensure_audit_stream(self._js)  # best effort: whichever service starts first creates it
        delay = 0.0
        while True:
            batch = await self._next_batch()
            self._unacked = len(batch.events)
            payload = batch.model_dump_json().encode()
            while True:  # the same batch, same id, until acked: the server drops duplicates
                try:
                    await self._js.publish(
                        subjects.audit_subject("batch"), payload, timeout=self._timeout,
                        headers={MSG_ID_HEADER: batch.batch_id},
                    )
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    delay = min(self._max_backoff, max(0.05, delay * 2))
                    log.warning("audit: publishing %d event(s) failed (%r); retrying in %.2fs",
                                len(batch.events), error, delay)
                    if isinstance(error, NoStreamResponseError):
                        with contextlib.suppress(Exception):
                            await ensure_audit_stream(self._js)
                    await asyncio.sleep(delay)
            delay = 0.0
            self.published += len(batch.events)
            self._unacked = 0
            for _ in batch.events:
                self._queue.task_done()
