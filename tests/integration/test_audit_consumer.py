"""The audit consumer (FastStream, `services.audit.writer`) with the same test twice: on FastStream's
in-memory `TestNatsBroker` (no server: a unit test of the handler's decisions) and on a real
nats-server with JetStream. Both write to the real ClickHouse engine (chdb).

A batch message of valid events becomes rows; a message that is no event is dead-lettered with the
reason, and never stops the valid ones around it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import pytest
from faststream.nats import JStream, NatsBroker, NatsMessage, TestNatsBroker

from libs.common.bus.permissions import AUDIT
from libs.common.bus.stores import declare_owned
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditBatch, AuditEvent
from libs.common.settings import StoreSettings
from services.audit.store import ClickHouseStore
from services.audit.writer import DURABLE, AuditConsumer, BatchWriter
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration  # both brokers write to the real ClickHouse engine (chdb)

BROKERS = [
    pytest.param("memory", id="in-memory-test-broker"),
    pytest.param("nats", id="real-nats-server"),
]


PRODUCER = "ingress-consumer-test"
SUBJECT = subjects.audit_subject("ingress", PRODUCER)


def _event(i: int) -> AuditEvent:
    return AuditEvent(
        key_name="ci",
        server="notes",
        tool=f"t{i}",
        name=f"notes__t{i}",
        status="ok",
        latency_ms=i,
        producer=PRODUCER,
        seq=i + 1,
    )


@asynccontextmanager
async def consumer(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[
    tuple[NatsBroker, ClickHouseStore, list[NatsMessage]]
]:  # fmt: skip
    """A running `AuditConsumer` on the broker `kind`, its store, and the dead letters it sent."""
    store = ClickHouseStore(f"chdb://{tmp_path / 'clickhouse'}")
    if kind == "nats":
        url = request.getfixturevalue("nats_url")
        nc = await nats.connect(url)
        await declare_owned(nc.jetstream(), AUDIT, StoreSettings())
        await nc.close()
        broker = NatsBroker(url, logger=None)
    else:
        broker = NatsBroker(logger=None)
    dead: list[NatsMessage] = []

    @broker.subscriber(subjects.AUDIT_DEAD, stream=JStream(subjects.AUDIT_DEAD_STREAM, declare=False))
    async def keep(message: NatsMessage) -> None:  # what an operator reading the dead letters sees
        dead.append(message)

    writer = BatchWriter(store)
    audit = AuditConsumer(broker, writer, batch_size=50, flush_interval=0.05)
    try:
        if kind == "nats":
            await audit.start()
            try:
                yield broker, store, dead
            finally:
                await audit.stop()
        else:
            try:
                async with TestNatsBroker(broker) as memory:
                    yield memory, store, dead
            finally:
                writer.close()  # what `audit.stop()` does for the real broker: the writer's thread goes
    finally:
        store.close()


@pytest.mark.parametrize("kind", BROKERS)
async def test_events_become_rows_and_what_is_no_event_is_dead_lettered(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    batch = AuditBatch(events=[_event(i) for i in range(3)])
    single = _event(3)
    async with consumer(kind, tmp_path, request) as (broker, store, dead):
        stream = subjects.AUDIT_STREAM
        await broker.publish(batch.model_dump_json().encode(), SUBJECT, stream=stream)
        await broker.publish(b'{"not": "an event"}', SUBJECT, stream=stream)
        await broker.publish(single.model_dump_json().encode(), SUBJECT, stream=stream)

        async def written() -> bool:
            return await asyncio.to_thread(store.count) == 4 and len(dead) == 1

        # well within the 30 s after which an unacked message is redelivered: it must come the first time
        await poll_until(written, "4 rows and 1 dead letter", within=15)
        rows = {row.event_id for row in await asyncio.to_thread(store.chain, PRODUCER, None)}
    assert rows == {e.event_id for e in [*batch.events, single]}
    (letter,) = dead
    assert letter.body == b'{"not": "an event"}'
    assert "not an AuditEvent" in letter.headers["Bastion-Dead-Reason"]
    assert letter.headers["Bastion-Dead-Subject"] == SUBJECT


class _HeldStore:
    """The real store behind a door: an insert waits until `opened` is set, as one into a stalled ClickHouse does."""

    def __init__(self, store: ClickHouseStore) -> None:
        self.store = store
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.left = threading.Event()

    def write(self, rows: Sequence[tuple[Any, ...]], refused: Sequence[tuple[Any, ...]] = ()) -> int:
        self.entered.set()
        self.opened.wait()
        try:
            return self.store.write(rows, refused)
        finally:
            self.left.set()


async def test_a_stopped_writer_hands_back_what_it_fetched_and_did_not_write_at_once(
    nats_url: str, tmp_path: Path
) -> None:
    """Messages a writer fetched are nak'd when it stops, not left for `ack_wait` (a minute here)."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await declare_owned(js, AUDIT, StoreSettings())
    store = ClickHouseStore(f"chdb://{tmp_path / 'clickhouse'}")
    held = _HeldStore(store)
    broker = NatsBroker(nats_url, logger=None, graceful_timeout=1)  # the stuck batch is not waited for long
    first = AuditConsumer(broker, BatchWriter(held), batch_size=3, flush_interval=0.05, ack_wait=60)
    try:
        for i in range(3):
            await js.publish(SUBJECT, _event(i).model_dump_json().encode())
        await first.start()
        await asyncio.to_thread(held.entered.wait, 30)  # the writer holds the batch, its insert not returned
        await first.stop()
        # another writer of the durable: without the naks nothing comes before `ack_wait` ends
        second = await js.pull_subscribe_bind(DURABLE, subjects.AUDIT_STREAM)
        again = await second.fetch(3, timeout=15)
        assert [msg.metadata.num_delivered for msg in again] == [2, 2, 2]  # nak'd, then sent again
        assert [AuditEvent.model_validate_json(msg.data).seq for msg in again] == [1, 2, 3]
        for msg in again:
            await msg.ack()
    finally:
        held.opened.set()
        if held.entered.is_set():
            await asyncio.to_thread(held.left.wait, 30)
        store.close()
        await nc.close()


async def test_messages_trickling_in_are_fetched_with_a_few_pull_requests_not_one_each(
    nats_url: str, tmp_path: Path
) -> None:
    """A gateway's events arrive a few at a time: the writer lets its batch fill for its window instead of
    sending JetStream a pull request (and getting an answer) per message, and still writes every one."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await declare_owned(js, AUDIT, StoreSettings())
    requests = await nc.subscribe(f"$JS.API.CONSUMER.MSG.NEXT.{subjects.AUDIT_STREAM}.{DURABLE}")
    store = ClickHouseStore(f"chdb://{tmp_path / 'clickhouse'}")
    broker = NatsBroker(nats_url, logger=None)
    audit = AuditConsumer(broker, BatchWriter(store), batch_size=100, flush_interval=3.0)
    try:
        await audit.start()
        for i in range(20):
            await js.publish(SUBJECT, _event(i).model_dump_json().encode())
            await asyncio.sleep(0.02)
        await poll_until(lambda: _stored(store, 20), what="the 20 events written")
        await nc.flush()
        assert requests.pending_msgs <= 8, f"{requests.pending_msgs} pull requests for 20 messages"
    finally:
        await audit.stop()
        store.close()
        await nc.close()


async def _stored(store: ClickHouseStore, n: int) -> bool:
    return await asyncio.to_thread(store.count) == n


async def test_a_writer_stopped_while_its_batch_fills_hands_back_what_it_fetched_at_once(
    nats_url: str, tmp_path: Path
) -> None:
    """A partial batch waits out its window (30 s here) in the fetch: stopping the writer then naks what it
    fetched, so another writer gets it now, not after `ack_wait` (a minute here)."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await declare_owned(js, AUDIT, StoreSettings())
    store = ClickHouseStore(f"chdb://{tmp_path / 'clickhouse'}")
    broker = NatsBroker(nats_url, logger=None, graceful_timeout=1)
    first = AuditConsumer(broker, BatchWriter(store), batch_size=10, flush_interval=30.0, ack_wait=60)
    try:
        for i in range(2):
            await js.publish(SUBJECT, _event(i).model_dump_json().encode())
        await first.start()
        await poll_until(lambda: _delivered(js, 2), what="both messages fetched by the writer")
        # delivered is not yet handed to the writer: a stop before the fetch returns them leaves them
        # to `ack_wait`, whatever the window does; what this test holds is the wait after that
        await poll_until(lambda: first.unsettled() == 2, what="both messages held in the writer's window")
        await first.stop()
        second = await js.pull_subscribe_bind(DURABLE, subjects.AUDIT_STREAM)
        again = await second.fetch(2, timeout=15)
        assert [msg.metadata.num_delivered for msg in again] == [2, 2]  # nak'd, then sent again
        for msg in again:
            await msg.ack()
        assert await asyncio.to_thread(store.count) == 0  # the window never ended: nothing was written
    finally:
        store.close()
        await nc.close()


async def _delivered(js: Any, n: int) -> bool:
    info = await js.consumer_info(subjects.AUDIT_STREAM, DURABLE)
    return bool(info.num_ack_pending == n)
