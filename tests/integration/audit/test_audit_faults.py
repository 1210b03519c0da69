"""Audit pipeline against a real nats-server and the real ClickHouse engine (chdb): bad messages are
dead-lettered, store outages waited out, and the producer's publisher never blocks nor grows unbounded."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from cli.ports import free_port
from cli.stack import EmbeddedNats
from libs.common.audit.audit_publisher import AuditPublisher
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditBatch, AuditEvent
from tests.support.audit_pipeline import (
    PRODUCER,
    SUBJECT,
    consumer_idle,
    drained,
    event,
    hold_store,
    query,
    redelivered,
    stored_is,
)
from tests.support.polling import poll_until
from tests.support.stores import declared

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------ bad messages and outages


async def test_garbage_is_dead_lettered_and_does_not_block_valid_events(audit, nc: NATS) -> None:
    js = nc.jetstream()
    subject = SUBJECT
    garbage = [
        b"not json",
        b"",
        b'{"event_id": "e1"}',  # JSON, but no status / latency
        event(0, ts=1e12).model_dump_json().encode(),  # year 33658: no DateTime64 column holds it
        event(0, request_bytes=-1).model_dump_json().encode(),
    ]
    valid = [event(i) for i in range(20)]
    async with audit() as service:
        for e in valid[:10]:
            await js.publish(subject, e.model_dump_json().encode())
        for payload in garbage:
            await js.publish(subject, payload)
        for e in valid[10:]:
            await js.publish(subject, e.model_dump_json().encode())
        await poll_until(lambda: stored_is(service, len(valid)), what="valid events written")
        await poll_until(lambda: consumer_idle(js), what="garbage terminated, not pending")

    dead = await js.pull_subscribe(subjects.AUDIT_DEAD, durable="test", stream=subjects.AUDIT_DEAD_STREAM)
    letters = await dead.fetch(len(garbage), timeout=5)
    assert sorted(m.data for m in letters) == sorted(garbage)
    for m in letters:
        assert m.headers and m.headers["Bastion-Dead-Reason"]
        assert m.headers["Bastion-Dead-Subject"] == subject


async def test_clickhouse_unreachable_keeps_events_until_a_store_works(
    audit, publisher: AuditPublisher, nc: NATS
) -> None:
    js = nc.jetstream()
    sent = [event(i) for i in range(120)]
    down = f"http://default:secret@127.0.0.1:{free_port()}/"  # nothing listens there
    async with audit(clickhouse_url=down) as service:
        for e in sent:
            publisher.emit(e)
        await poll_until(lambda: redelivered(js), what="a failed insert to be nak'd")
        assert service.writer is not None and service.writer.written == 0
        rows = await query(nc)
        assert rows.error and "secret" not in rows.error
    async with audit() as service:
        # events the stopped service had fetched and not yet nak'd come back only after the consumer's
        # ack_wait (30 s): wait past it, as a replica would
        await poll_until(lambda: stored_is(service, len(sent)), what="every event written", within=75)


@pytest.fixture
def store_lock_holder(chdb_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """Another process holding the embedded store open (`hold_store`) for the test, then ended."""
    proc = hold_store(chdb_url)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


async def test_clickhouse_outage_and_recovery_within_one_service(
    audit, publisher: AuditPublisher, nc: NATS, store_lock_holder: subprocess.Popen[bytes]
) -> None:
    js = nc.jetstream()
    sent = [event(i) for i in range(150)]
    async with audit() as service:
        for e in sent:
            publisher.emit(e)
        await poll_until(lambda: redelivered(js), what="a failed insert to be nak'd")
        assert store_lock_holder.stdin is not None
        store_lock_holder.stdin.close()  # the other process lets go of the store
        await asyncio.to_thread(store_lock_holder.wait, 30)
        await poll_until(lambda: stored_is(service, len(sent)), what="every event written after recovery")
        await poll_until(lambda: consumer_idle(js), what="all acked")


# ------------------------------------------------------------------ publisher


async def test_publisher_overflow_is_logged_not_raised(nc: NATS, caplog: pytest.LogCaptureFixture) -> None:
    pub = AuditPublisher(nc, max_queue=2, producer=PRODUCER)
    assert [pub.emit(event(i)) for i in range(3)] == [True, True, False]
    assert pub.dropped == 1
    assert "buffer full" in caplog.text
    async with pub:  # the two queued events are published on start and drained on close
        pass
    assert pub.published == 2 and pub.pending == 0
    assert not pub.emit(event(9))  # closed: refused, not raised


async def test_a_huge_event_is_cut_and_never_blocks_the_ones_behind_it(audit, tmp_path: Path) -> None:
    """A 3.8 MB tool name (and the error quoting it) against a NATS with its default 1 MB
    max payload used to be retried forever, and no later event on that publisher was ever stored."""
    server = EmbeddedNats(tmp_path / "nats-1mb", max_payload_mb=1).start()
    try:
        client = await nats.connect(server.url)
        name = "x" * 3_800_000
        huge = event(0, status="error", name=name, error=f"Unknown tool: {name!r}", error_kind="unknown_tool")
        ordinary = [event(i) for i in range(1, 101)]
        async with AuditPublisher(client, producer=PRODUCER) as pub, audit(nats_url=server.url) as service:
            assert pub.emit(huge)
            for e in ordinary:
                assert pub.emit(e)
            await poll_until(lambda: stored_is(service, 101), "the huge event and the 100 behind it")
            rows = {row.event_id: row for row in (await query(client, limit=200)).rows}
            assert pub.dead_lettered == 0 and pub.dropped == 0
        stored = rows[huge.event_id]
        assert stored.truncated == {"name": 3_800_000, "error": 3_800_000 + len("Unknown tool: ''")}
        assert stored.name == name[:1024] and len(stored.error or "") == 8192
        assert all(rows[e.event_id].truncated == {} for e in ordinary)
        await client.close()
    finally:
        server.stop()


async def test_an_event_the_server_refuses_is_dead_lettered_with_its_reason(
    audit, publisher: AuditPublisher, nc: NATS
) -> None:
    """A batch the stream refuses is split; the one event it still refuses goes to the dead-letter
    stream with the reason, and every other event is stored."""
    js = nc.jetstream()
    refused = event(0, status="error", error="e" * 6000)  # within the field limits, over the stream's
    ordinary = [event(i) for i in range(1, 41)]
    async with audit() as service:
        info = await js.stream_info(subjects.AUDIT_STREAM)
        info.config.max_msg_size = 4000  # an operator's limit, below what the publisher would batch
        await js.update_stream(info.config)
        for e in ordinary[:20]:
            publisher.emit(e)
        publisher.emit(refused)
        for e in ordinary[20:]:
            publisher.emit(e)
        await poll_until(lambda: stored_is(service, 40), "the 40 ordinary events")
        await poll_until(lambda: drained(publisher), "publisher drained")
        assert publisher.dead_lettered == 1 and publisher.dropped == 0
        rows = {row.event_id for row in (await query(nc, limit=100)).rows}
    assert rows == {e.event_id for e in ordinary}
    dead = await js.pull_subscribe(subjects.AUDIT_DEAD, durable="test", stream=subjects.AUDIT_DEAD_STREAM)
    (letter,) = await dead.fetch(1, timeout=5)
    chain = {"ts", "producer", "seq", "prev_hash", "hash"}  # linked before NATS refused it
    assert AuditEvent.model_validate_json(letter.data).model_dump(exclude=chain) == refused.model_dump(exclude=chain)
    assert letter.headers is not None
    assert "maximum" in letter.headers["Bastion-Dead-Reason"]  # "message size exceeds maximum allowed"
    assert letter.headers["Bastion-Dead-Event"] == refused.event_id


async def test_an_event_no_json_can_carry_is_dead_lettered(publisher: AuditPublisher, nc: NATS) -> None:
    broken = event(1, name="lone \ud800 surrogate")
    fine = event(2)
    publisher.emit(broken)
    publisher.emit(fine)
    await poll_until(lambda: drained(publisher), "publisher drained")
    assert publisher.dead_lettered == 1 and publisher.published == 1
    dead = await nc.jetstream().pull_subscribe(subjects.AUDIT_DEAD, durable="t", stream=subjects.AUDIT_DEAD_STREAM)
    (letter,) = await dead.fetch(1, timeout=5)
    kept = AuditEvent.model_validate_json(letter.data)
    assert kept.event_id == broken.event_id and kept.name == "lone ? surrogate"
    assert letter.headers is not None and "cannot be serialized" in letter.headers["Bastion-Dead-Reason"]


async def test_a_batch_published_before_its_stream_exists_is_retried_until_acked(
    nats_server: EmbeddedNats, caplog: pytest.LogCaptureFixture
) -> None:
    """The publisher's first attempt at a batch runs outside its retry loop: one that fails for a
    passing reason (no stream yet: only the audit service creates it) still goes on to that loop."""
    client = await nats.connect(nats_server.url)
    async with AuditPublisher(client, producer=PRODUCER, max_backoff=0.1) as pub:
        sent = [event(i) for i in range(3)]
        assert all(pub.emit(e) for e in sent)
        await poll_until(
            lambda: _true("no stream takes" in caplog.text), "a first attempt refused for want of a stream"
        )
        assert pub.published == 0 and pub.pending == 3
        await declared(client.jetstream(), subjects.AUDIT_STREAM, subjects.AUDIT_DEAD_STREAM)
        await poll_until(lambda: drained(pub), "the batch acked once its stream exists")
        assert pub.published == 3 and pub.dead_lettered == 0 and pub.dropped == 0
    messages = await client.jetstream().pull_subscribe(SUBJECT, durable="t", stream=subjects.AUDIT_STREAM)
    batches = await messages.fetch(10, timeout=5)
    stored = [e.event_id for batch in batches for e in AuditBatch.model_validate_json(batch.data).events]
    assert sorted(stored) == sorted(e.event_id for e in sent)  # each once: a retry is the same batch id
    await client.close()


async def test_nats_killed_and_restarted_loses_no_event_and_piles_up_no_copies(
    audit, nats_server: EmbeddedNats
) -> None:
    """nats-server SIGKILLed and restarted on the same port (JetStream on disk). While it
    is away, events wait in the publisher (not as retried copies in the client's send buffer), and
    all of them are stored once it is back."""
    client = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    async with AuditPublisher(client, publish_timeout=0.5, producer=PRODUCER) as pub, audit() as service:
        for i in range(200):
            pub.emit(event(i))
        await poll_until(lambda: stored_is(service, 200), "first 200")
        assert nats_server.proc is not None
        nats_server.proc.kill()  # SIGKILL: no goodbye to the clients, no flush
        await asyncio.to_thread(nats_server.proc.wait, 10)
        for i in range(200, 500):
            pub.emit(event(i))
        await poll_until(lambda: _true(pub.holding), "the publisher to hold events for NATS")
        assert pub.pending == 300
        assert client.pending_data_size == 0  # nothing sent into the dead connection, so no copies
        nats_server.start()  # same port, same JetStream store
        await poll_until(lambda: stored_is(service, 500), "all 500 after the restart")
        assert pub.dropped == 0 and not pub.holding
    await client.close()


async def _true(value: bool) -> bool:
    return value


async def test_the_buffer_is_bounded_in_bytes_too_and_events_are_cut_before_they_are_held(nc: NATS) -> None:
    pub = AuditPublisher(nc, max_bytes=10_000, producer=PRODUCER)  # not started: everything emitted stays held
    assert pub.emit(event(0, name="n" * 3_800_000))  # held as its first KiB, not 3.8 MB
    accepted = [pub.emit(event(i, error="e" * 3000)) for i in range(1, 6)]
    assert accepted == [True, True, False, False, False]
    assert pub.dropped == 3 and pub.pending == 3


async def test_a_full_buffer_drops_loudly_and_counts(
    nats_server: EmbeddedNats, caplog: pytest.LogCaptureFixture
) -> None:
    client = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    await declared(client.jetstream(), subjects.AUDIT_STREAM, subjects.AUDIT_DEAD_STREAM)  # as audit would
    async with AuditPublisher(client, max_queue=10, producer=PRODUCER) as pub:
        nats_server.stop()
        await poll_until(lambda: _true(not client.is_connected), "the client to notice")
        pub.emit(event(0))
        await poll_until(lambda: _true(pub.holding), "the publisher to hold events for NATS")
        accepted = [pub.emit(event(i)) for i in range(1, 21)]
        assert accepted == [True] * 10 + [False] * 10  # one event in hand, ten in the buffer
        assert pub.dropped == 10 and pub.pending == 11
        assert "buffer full" in caplog.text
        nats_server.start()
        await poll_until(lambda: drained(pub), "the held events published")
        assert pub.published == 11
    await client.close()
