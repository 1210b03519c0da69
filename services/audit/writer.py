"""The audit stream -> ClickHouse pipeline (the shape of getsentry/arroyo): fetch, split, write, ack.

A message is acked only after the batch holding it was inserted; if ClickHouse fails, the batch is
nak'd with a growing delay and the writer pauses, so events wait in the stream and none is lost.
A message that can never be a row is copied to the dead-letter stream and terminated: it is never
retried and never blocks the valid ones. A redelivery after a lost ack is harmless: the table
collapses duplicates (see `schema`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterable

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bastion_common import metrics, subjects

from .batch import Backoff, split
from .errors import StoreUnavailable
from .store import ClickHouseStore

__all__ = ["DURABLE", "AuditWriter"]

log = logging.getLogger(__name__)

DURABLE = "audit-writer"


class AuditWriter:
    def __init__(
        self,
        js: JetStreamContext,
        store: ClickHouseStore,
        *,
        batch_size: int,
        flush_interval: float,
        ack_wait: float = 30.0,
        backoff: Backoff | None = None,
    ) -> None:
        self._js = js
        self._store = store
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._ack_wait = ack_wait
        self._backoff = backoff or Backoff()
        self._stopping = asyncio.Event()
        self._sub: JetStreamContext.PullSubscription | None = None
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dead_lettered = 0

    async def start(self) -> None:
        config = ConsumerConfig(
            durable_name=DURABLE,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait,
            deliver_policy=DeliverPolicy.ALL,
            max_deliver=-1,
            max_ack_pending=50 * self._batch_size,
        )
        self._sub = await self._js.pull_subscribe(
            f"{subjects.AUDIT_EVENTS}.>", durable=DURABLE, stream=subjects.AUDIT_STREAM, config=config
        )
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self, grace: float = 10.0) -> None:
        """Finish the batch in hand (so it is acked, not left to time out), then stop fetching."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, grace)
            except TimeoutError:
                log.warning("audit writer did not stop within %.0fs; unacked events will be redelivered", grace)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _run(self) -> None:
        """Accumulate up to `batch_size` messages or `flush_interval` seconds, then write once.

        ClickHouse (and chdb above all) pays per insert, not per row: a few large inserts a second
        cost a fraction of one insert per fetch, and leave the CPU to the request path.
        """
        assert self._sub is not None
        loop = asyncio.get_running_loop()
        fetch_backoff = Backoff()
        pending: list[Msg] = []
        first_at = 0.0
        while not self._stopping.is_set():
            wait = self._flush_interval - (loop.time() - first_at) if pending else self._flush_interval
            try:
                msgs = await self._sub.fetch(self._batch_size - len(pending), timeout=max(wait, 0.01))
            except TimeoutError:
                msgs = []
            except Exception as exc:  # NATS disconnected or restarting: the connection reconnects itself
                log.warning("audit fetch failed: %r", exc)
                await self._pause(fetch_backoff.next())
                continue
            fetch_backoff.reset()
            if msgs:
                metrics.AUDIT_BACKLOG.set(msgs[-1].metadata.num_pending)
            if msgs and not pending:
                first_at = loop.time()
            pending.extend(msgs)
            due = len(pending) >= self._batch_size or loop.time() - first_at >= self._flush_interval
            if pending and (due or self._stopping.is_set()):
                batch, pending = pending, []
                try:
                    await self._handle(batch)
                except Exception:  # unacked messages are redelivered after ack_wait
                    log.exception("audit batch failed")
        if pending:
            with contextlib.suppress(Exception):
                await self._handle(pending)

    async def _handle(self, msgs: list[Msg]) -> None:
        batch = split([msg.data for msg in msgs])
        for index, reason in batch.bad:
            await self._dead_letter(msgs[index], reason)
        if not batch.rows:
            return
        try:
            with metrics.AUDIT_INSERT_SECONDS.time():
                await asyncio.to_thread(self._store.insert, batch.rows)
        except StoreUnavailable as exc:
            delay = self._backoff.next()
            log.warning("audit: %d event(s) not written, retrying in %.1fs: %s", len(batch.rows), delay, exc)
            await _settle(msgs[i].nak(delay=delay) for i in batch.good)
            await self._pause(delay)
            return
        self._backoff.reset()
        await _settle(msgs[i].ack() for i in batch.good)
        self.written += len(batch.rows)
        metrics.AUDIT_INSERTED.inc(len(batch.rows))

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        seq = msg.metadata.sequence.stream
        headers = {
            "Nats-Msg-Id": f"dead-{seq}",
            "Bastion-Dead-Reason": " ".join(reason.split())[:512],
            "Bastion-Dead-Subject": msg.subject,
            "Bastion-Dead-Seq": str(seq),
        }
        try:
            await self._js.publish(subjects.AUDIT_DEAD, msg.data, headers=headers)
        except Exception as exc:
            log.warning("audit: cannot dead-letter message %d yet: %r", seq, exc)
            await _settle([msg.nak(delay=self._backoff.next())])
            return
        await _settle([msg.term()])
        self.dead_lettered += 1
        metrics.AUDIT_DEAD_LETTERS.inc()
        log.warning("audit: dead-lettered message %d: %s", seq, reason)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


async def _settle(acks: Iterable[Awaitable[None]]) -> None:
    """Send acks/naks; one that cannot be sent only means a redelivery after `ack_wait`."""
    for ack in acks:
        try:
            await ack
        except Exception as exc:
            log.warning("audit: ack not sent (%r); the message will be redelivered", exc)
            return
