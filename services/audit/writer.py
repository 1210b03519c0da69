"""The audit stream -> ClickHouse pipeline (the shape of getsentry/arroyo): fetch, split, write, ack.

FastStream runs the durable JetStream pull consumer (`AuditConsumer`): it fetches up to
`batch_size` messages or waits `flush_interval` seconds (a fetch that got part of a batch waits out the
window, so a batch takes 2-3 pulls, not one per message), then hands the batch to one typed handler
and fetches the next batch only once that handler returned, so a slow store slows the fetching
down instead of piling messages up in memory. The handler (`BatchWriter.write`) splits the batch
into rows and rejects (`batch.split`: a message is stored only when the producer role whose
subject it came on owns every chain in it), and:

- acknowledges a message only after the insert holding its rows returned (`AckPolicy.MANUAL`);
- records why a rejected message was refused (`schema.REFUSED`, for `bastion audit verify`), copies
  it to the dead-letter stream and terminates it: it is never retried and never blocks the valid ones;
- when ClickHouse fails or refuses (down, overloaded: too many parts, a timeout), naks the batch
  with a growing delay and pauses, so events wait in the stream and none is lost.

The inserts run on a thread of their own and the store's `events` lane (a connection nothing else
uses), so no query, export or checkpoint can hold them up. A redelivery after a lost ack is
harmless: the store inserts only events it does not hold yet, so the rollups count them once.
The request path does not use FastStream (it costs 2-3x the latency of raw nats-py there,
docs/architecture.md); this consumer is off the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from faststream import Context
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.message import NatsBatchMessage
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import ServiceUnavailableError

from libs.common.bus.nats import drain_or_close
from libs.common.contracts import subjects

from .batch import Arrival, Backoff, Rejected, split
from .errors import StoreUnavailable
from .metrics import AUDIT_BACKLOG, AUDIT_DEAD_LETTERS, AUDIT_INSERT_SECONDS, AUDIT_INSERTED

__all__ = ["DURABLE", "AuditConsumer", "BatchWriter", "Publish", "Sink"]

log = logging.getLogger(__name__)

DURABLE = "audit-writer"


class Sink(Protocol):
    """Where rows go: `ClickHouseStore.write` (synchronous; run in the writer's thread)."""

    def write(self, rows: Sequence[tuple[Any, ...]], refused: Sequence[tuple[Any, ...]] = ()) -> int: ...


class Publish(Protocol):
    """A JetStream publish of one dead letter (`subject`, `payload`, `headers`)."""

    def __call__(self, subject: str, payload: bytes, *, headers: dict[str, str]) -> Awaitable[Any]: ...


class BatchWriter:
    """What happens to one fetched batch: rows inserted then acked, rejects dead-lettered."""

    def __init__(
        self, store: Sink, backoff: Backoff | None = None, known_key: Callable[[str], bool] = lambda _key: True
    ) -> None:
        self._store = store
        self._backoff = backoff or Backoff()
        self._known_key = known_key
        """Whether a key id exists (`bastion_keys`): an event naming one that does not is flagged."""
        self._stopping = asyncio.Event()
        self._lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-writer")
        self.written = 0
        """Events inserted (a redelivered one is not inserted again)."""
        self.duplicates = 0
        """Events received again after they were stored (an ack that was lost), not inserted."""
        self.dead_lettered = 0

    def stop(self) -> None:
        """End a pause in progress (the batch in hand was nak'd already)."""
        self._stopping.set()

    def close(self) -> None:
        """Let the writer's thread go, once no batch is handled any more."""
        self._lane.shutdown(wait=False)

    async def write(self, msgs: list[Msg], publish: Publish) -> None:
        if msgs and (pending := _pending(msgs[-1])) is not None:
            AUDIT_BACKLOG.set(pending)
        batch = split([Arrival(msg.subject, msg.data) for msg in msgs], self._known_key)
        if not batch.rows and not batch.bad:
            return
        refused = [_refusal(msgs[bad.index], bad) for bad in batch.bad]
        try:
            with AUDIT_INSERT_SECONDS.time():
                loop = asyncio.get_running_loop()
                fresh = await loop.run_in_executor(self._lane, self._store.write, batch.rows, refused)
        except StoreUnavailable as exc:
            delay = self._backoff.next()
            log.warning("audit: %d message(s) not written, retrying in %.1fs: %s", len(msgs), delay, exc)
            await _settle(msgs[i].nak(delay=delay) for i in [*batch.good, *(bad.index for bad in batch.bad)])
            await self._pause(delay)  # the consumer fetches nothing meanwhile
            return
        self._backoff.reset()
        for bad in batch.bad:
            await self._dead_letter(msgs[bad.index], bad.reason, publish)
        await _settle(msgs[i].ack() for i in batch.good)
        self.written += fresh
        self.duplicates += len(batch.rows) - fresh
        AUDIT_INSERTED.inc(fresh)

    async def _dead_letter(self, msg: Msg, reason: str, publish: Publish) -> None:
        seq = _sequence(msg)
        headers = {
            "Nats-Msg-Id": f"dead-{seq}" if seq is not None else f"dead-{_fallback_seq(msg)}",
            "Bastion-Dead-Reason": " ".join(reason.split())[:512],
            "Bastion-Dead-Subject": msg.subject,
            "Bastion-Dead-Seq": str(seq),
        }
        try:
            await publish(subjects.AUDIT_DEAD, msg.data, headers=headers)
        except Exception as exc:
            log.warning("audit: cannot dead-letter message %s yet: %r", seq, exc)
            await _settle([msg.nak(delay=self._backoff.next())])
            return
        await _settle([msg.term()])
        self.dead_lettered += 1
        AUDIT_DEAD_LETTERS.inc()
        log.warning("audit: dead-lettered message %s: %s", seq, reason)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


class AuditConsumer:
    """The audit stream's durable consumer, run by a FastStream `NatsBroker`.

    `broker` is connected by the caller's settings (the audit role's inbox prefix and NKey); tests
    give a broker under `faststream.nats.TestNatsBroker` to run the same handler in memory."""

    def __init__(
        self,
        broker: NatsBroker,
        writer: BatchWriter,
        *,
        batch_size: int,
        flush_interval: float,
        ack_wait: float = 30.0,
        inbox_prefix: str = "_INBOX",
    ) -> None:
        self.broker = broker
        self.writer = writer
        self._most_pending = 50 * batch_size
        config = ConsumerConfig(
            durable_name=DURABLE,
            ack_policy=JsAckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            deliver_policy=DeliverPolicy.ALL,
            max_deliver=-1,
            max_ack_pending=self._most_pending,
        )
        self.subscriber = broker.subscriber(
            f"{subjects.AUDIT_EVENTS}.>",
            stream=JStream(subjects.AUDIT_STREAM, declare=False),  # declared by its owner (`stores.declare_owned`)
            durable=DURABLE,
            config=config,
            pull_sub=PullSub(batch_size, timeout=flush_interval, batch=True),
            ack_policy=AckPolicy.MANUAL,  # acked by `BatchWriter`, message by message, after the insert
            decoder=_undecoded,
            inbox_prefix=f"{inbox_prefix}.".encode(),  # where fetched messages arrive: a reply subject of the role
            title="audit writer",
            description="Writes audit events to ClickHouse; acks after the insert, dead-letters what is no event.",
        )
        self.subscriber(self._on_batch)
        self._fetching: _NatsTimeouts | None = None

    async def _on_batch(self, message: Annotated[NatsBatchMessage, Context("message")]) -> None:
        await self.writer.write(message.raw_message, self._dead_letter)

    async def _dead_letter(self, subject: str, payload: bytes, *, headers: dict[str, str]) -> None:
        # through the broker, so the in-memory test broker delivers it as the real one stores it
        await self.broker.publish(payload, subject, headers=headers, stream=subjects.AUDIT_DEAD_STREAM)

    async def start(self) -> None:
        await self.broker.start()
        if self.subscriber.subscription is not None:  # None under the in-memory test broker
            self._fetching = _NatsTimeouts(self.subscriber.subscription, self._most_pending)
            self.subscriber.subscription = self._fetching  # type: ignore[assignment]

    def unsettled(self) -> int:
        """Messages fetched and not settled yet: what `stop` would hand back now."""
        return 0 if self._fetching is None else len(self._fetching.unsettled())

    async def stop(self) -> None:
        """Stop fetching, hand back what was fetched and not written, then drain the connection.

        Stopping the subscriber cancels the batch in hand; every message fetched and not settled (that
        batch, or one fetched as the loop ended) is nak'd at once, so another writer gets it now
        instead of after `ack_wait`. One whose insert finished anyway is stored once: the store skips
        events it holds. FastStream's drain raises while NATS is away (nats-py drains no reconnecting
        connection) and leaves the connection reconnecting forever: it is closed whatever the drain did."""
        self.writer.stop()
        state = self.broker.config.connection_state
        connection = state.connection if state else None
        try:
            try:
                await self.subscriber.stop()
                if self._fetching is not None:
                    await _settle(msg.nak() for msg in self._fetching.unsettled())
            finally:
                await self.broker.stop()  # whatever the naks did: unsent, they are redelivered after `ack_wait`
        finally:
            self.writer.close()
            if connection is not None:
                await drain_or_close(connection)  # a no-op after FastStream's drain


_AFTER_REFUSED_FETCH = 0.1
"""Seconds the pull loop waits after a fetch the connection refused (closed, or JetStream away)."""
_LAST_FETCH = 0.05
"""Seconds of a batch's window left for the fetch that takes what arrived while a partial batch waited."""


class _NatsTimeouts:
    """The pull subscription FastStream fetches from: each fetch timeout raised as nats-py's own `TimeoutError`.

    It also keeps the messages fetched and not settled, which `AuditConsumer.stop` naks.

    FastStream 0.7.8 collects a batch over several fetches and ends the batch on
    `nats.errors.TimeoutError`; nats-py also raises a plain `asyncio.TimeoutError` (a fetch whose
    time ran out while it waited for the server's answer to its no-wait probe). That one escaped
    FastStream's loop, dropping the messages already collected for the batch: they were redelivered
    only after `ack_wait` (30 s). Translated, the batch is handed to the handler as it should be."""

    def __init__(self, subscription: Any, most_pending: int) -> None:
        self._subscription = subscription
        self._most_pending = most_pending
        self._fetched: list[Msg] = []
        """Messages fetched and perhaps not settled yet: no more than the consumer's `max_ack_pending`
        (one a handler left unsettled is redelivered as another message; the oldest are let go)."""

    def unsettled(self) -> list[Msg]:
        """The fetched messages not acked, nak'd or terminated (to hand back when the writer stops)."""
        return [msg for msg in self._fetched if not msg.is_acked]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._subscription, name)

    async def fetch(self, batch: int = 1, **options: Any) -> list[Msg]:
        """`PullSubscription.fetch` (its `timeout` and `heartbeat` passed on as they come), that lets a batch fill.

        nats-py answers a fetch as soon as one message is there, and FastStream fetches again for the rest
        of its window: with events trickling in, one fetch (a pull request, the server's answer, a timer)
        per message, ~200 per 2 s batch and most of the writer's CPU at 500 events/s. A fetch that got
        less than it asked for waits out its window, less `_LAST_FETCH`, so the next one takes everything
        that arrived meanwhile at once. The batch is handed over when it would have been anyway (full, or
        the window over); a full fetch, a backlog's, waits for nothing."""
        started = time.monotonic()
        messages = await self._fetch(batch, **options)
        timeout = options.get("timeout")
        if messages and len(messages) < batch and timeout is not None:
            await asyncio.sleep(max(0.0, started + timeout - _LAST_FETCH - time.monotonic()))
        return messages

    async def _fetch(self, batch: int, **options: Any) -> list[Msg]:
        try:
            messages: list[Msg] = await self._subscription.fetch(batch, **options)
        except NatsTimeoutError:
            raise
        except TimeoutError:
            raise NatsTimeoutError from None
        except (ConnectionClosedError, ServiceUnavailableError):
            # FastStream answers these by fetching again at once for as long as its broker runs; a
            # closed connection fails each fetch without ever waiting, so without a pause that loop
            # never yields and starves the event loop, the service's own stop included (seen once:
            # a suite hung in a teardown with FastStream's pull loop at 43 % of a core)
            await asyncio.sleep(_AFTER_REFUSED_FETCH)
            raise
        self._fetched = [*self.unsettled(), *messages][-self._most_pending :]
        return messages


async def _undecoded(message: StreamMessage[Any]) -> Any:
    """The batch's payloads as fetched.

    `BatchWriter` validates each one itself (`batch.split`); FastStream's own decoder would JSON-parse
    every payload first, for nothing (~3 µs per event)."""
    return message.body


def _refusal(msg: Msg, bad: Rejected) -> tuple[Any, ...]:
    """The `schema.REFUSED` row of a rejected message."""
    seq = _sequence(msg)
    now = datetime.fromtimestamp(time.time(), UTC)
    seq = seq if seq is not None else _fallback_seq(msg)
    return (seq, now, msg.subject, bad.role, bad.producer, bad.event_id, bad.reason)


def _fallback_seq(msg: Msg) -> int:
    """A stand-in for the stream sequence of a message that did not come from JetStream."""
    return hash((msg.subject, msg.data)) & 0x7FFF_FFFF_FFFF_FFFF


def _sequence(msg: Msg) -> int | None:
    """The message's stream sequence.

    Or None for a message that did not come from JetStream (FastStream's in-memory test broker)."""
    try:
        return int(msg.metadata.sequence.stream)
    except Exception:  # no `$JS.ACK` reply subject: no metadata
        return None


def _pending(msg: Msg) -> int | None:
    try:
        return int(msg.metadata.num_pending)
    except Exception:
        return None


async def _settle(acks: Iterable[Awaitable[None]]) -> None:
    """Send acks/naks; one that cannot be sent only means a redelivery after `ack_wait`."""
    for ack in acks:
        try:
            await ack
        except Exception as exc:
            log.warning("audit: ack not sent (%r); the message will be redelivered", exc)
            return
