"""The failover benchmark's wait for the audit trail (`bench/failover_checks.audit_settled`) on a real
nats-server: rows that stopped changing are not settled while the audit writer's consumer still holds
messages handed to a writer that never acked them (one killed mid-batch: they come back after
`ack_wait`). Reading too early is how `tests/e2e/test_failover.py` reported stored rows as missing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from bench.failover_checks import audit_settled
from bench.replicated_stack import consumer_backlog
from cli.stack import EmbeddedNats, nats_monitoring_url
from libs.common.contracts.messages import AuditEvent
from libs.common.runtime.tasks import cancel_and_wait

pytestmark = pytest.mark.integration

STREAM, DURABLE = "SETTLE_TEST", "writer"


@pytest.fixture
def monitored(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A nats-server with HTTP monitoring: its client URL and its monitoring address."""
    server = EmbeddedNats(tmp_path / "nats", monitor=True).start()
    try:
        url = nats_monitoring_url(server.data_dir)
        assert url is not None
        yield server.url, url
    finally:
        server.stop()


def _event(n: int) -> AuditEvent:
    return AuditEvent(event_id=f"e{n}", kind="tool_call", status="ok", latency_ms=1.0, key_id="k", key_name="k")


async def test_stable_rows_are_not_settled_while_a_writer_holds_messages_unacked(monitored: tuple[str, str]) -> None:
    nats_url, monitoring = monitored
    nc = await nats.connect(nats_url)
    writer: asyncio.Task[None] | None = None
    try:
        js = nc.jetstream()
        await js.add_stream(name=STREAM, subjects=["settle.>"])
        config = ConsumerConfig(durable_name=DURABLE, ack_policy=AckPolicy.EXPLICIT, ack_wait=600)
        await js.add_consumer(STREAM, config)
        for n in range(3):
            await js.publish(f"settle.{n}", str(n).encode())
        killed = await js.pull_subscribe_bind(DURABLE, STREAM)
        held = await killed.fetch(2, timeout=5)  # the writer that dies: fetched, never acked
        assert consumer_backlog([monitoring], STREAM, DURABLE) == (1, 2)
        assert consumer_backlog([monitoring], STREAM, "nobody") is None

        stored: list[AuditEvent] = []
        reads = 0
        read_twice = asyncio.Event()

        async def read() -> list[AuditEvent]:
            nonlocal reads
            reads += 1
            if reads >= 3:  # two reads agreed, and a third: the old rule had returned by now
                read_twice.set()
            return list(stored)

        async def takeover() -> None:  # the other writer, once the held batch is handed back
            await read_twice.wait()
            for msg in [*held, *await killed.fetch(1, timeout=5)]:
                await msg.ack()
                stored.append(_event(len(stored)))
            await nc.flush()

        writer = asyncio.create_task(takeover())
        rows = await audit_settled(
            read, lambda: consumer_backlog([monitoring], STREAM, DURABLE), want=0, within=60, pause=0.05
        )
        assert len(rows) == 3, "settled only once every message was acked and its row read"
        await writer
        assert consumer_backlog([monitoring], STREAM, DURABLE) == (0, 0)
    finally:
        await cancel_and_wait(writer)
        await nc.close()
