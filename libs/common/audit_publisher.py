"""Audit emission for every producer: never waits on the request path, never loses an event.

`emit()` only enqueues (bounded), so a `tools/call` handler pays a `put_nowait` and nothing else.
A background task publishes to JetStream in concurrent waves and awaits each ack; a failed publish
(NATS down or restarting, stream not ready) is retried with backoff until it is acked, with the
header `Nats-Msg-Id` = `event_id` so the server drops the copy a retry may produce. Events are only
lost if the queue overflows (logged) or the process dies before they were acked; `aclose()` drains
within a bounded time on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError

from . import subjects
from .messages import AuditEvent
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
        concurrency: int = 256,
        publish_timeout: float = 5.0,
        max_backoff: float = 2.0,
    ) -> None:
        self._js = js
        self._queue: asyncio.Queue[AuditEvent] = asyncio.Queue(max_queue)
        self._concurrency = concurrency
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

    async def aclose(self, grace: float = 5.0) -> None:
        """Stop accepting events and publish what is queued, for at most `grace` seconds."""
        self._closed = True
        if self._task is None:
            return
        if not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), grace)
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

    async def _run(self) -> None:
        with contextlib.suppress(Exception):
            await ensure_audit_stream(self._js)  # best effort: whichever service starts first creates it
        wave: list[AuditEvent] = []
        delay = 0.0
        while True:
            if not wave:
                wave.append(await self._queue.get())
            while len(wave) < self._concurrency and not self._queue.empty():
                wave.append(self._queue.get_nowait())
            self._unacked = len(wave)
            results = await asyncio.gather(*map(self._publish, wave), return_exceptions=True)
            failed = [event for event, result in zip(wave, results, strict=True) if result is not None]
            for _ in range(len(wave) - len(failed)):
                self._queue.task_done()
            self.published += len(wave) - len(failed)
            self._unacked = len(failed)
            wave = failed
            if not failed:
                delay = 0.0
                continue
            error = next(r for r in results if r is not None)
            delay = min(self._max_backoff, max(0.05, delay * 2))
            log.warning("audit: %d publish(es) failed (%r); retrying in %.2fs", len(failed), error, delay)
            if isinstance(error, NoStreamResponseError):
                with contextlib.suppress(Exception):
                    await ensure_audit_stream(self._js)
            await asyncio.sleep(delay)

    async def _publish(self, event: AuditEvent) -> None:
        await self._js.publish(
            subjects.audit_subject(event.kind),
            event.model_dump_json().encode(),
            timeout=self._timeout,
            headers={MSG_ID_HEADER: event.event_id},
        )
