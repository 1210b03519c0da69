"""The audit consumer (FastStream, `services.audit.writer`) with the same test twice: on FastStream's
in-memory `TestNatsBroker` (no server: a unit test of the handler's decisions) and on a real
nats-server with JetStream. Both write to the real ClickHouse engine (chdb).

A batch message of valid events becomes rows; a message that is no event is dead-lettered with the
reason, and never stops the valid ones around it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats
import pytest
from faststream.nats import JStream, NatsBroker, NatsMessage, TestNatsBroker

from libs.common.bus.permissions import AUDIT
from libs.common.bus.stores import declare_owned
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditBatch, AuditEvent
from libs.common.settings import StoreSettings
from services.audit.store import ClickHouseStore
from services.audit.writer import AuditConsumer, BatchWriter
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
