"""Audit pipeline against a real nats-server and the real ClickHouse engine (chdb): no event lost
or stored twice across restarts of the audit service, of NATS and of the audit process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from cli.stack import EmbeddedNats, kill_with_parent
from libs.common.audit.audit_publisher import AuditPublisher
from libs.common.contracts import subjects
from libs.common.contracts.messages import audit_events
from services.audit import AuditService
from services.audit.schema import STORED_COLUMNS, to_row
from services.audit.store import ClickHouseStore
from tests.support.audit_pipeline import consumer_idle, drained, event, query, stored, stored_is
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------ write path


async def test_published_events_land_with_every_field(audit, publisher: AuditPublisher, nc: NATS) -> None:
    sent = [
        event(1, trace_id="t-1", upstream_ms=0.75, request_bytes=120, response_bytes=4096),
        event(2, status="denied", error_kind="forbidden", error="not granted", error_code=-32050),
        event(3, status="error", error_kind="upstream_timeout", error="upstream took too long", latency_ms=30000.0),
    ]
    async with audit() as service:
        for e in sent:
            assert publisher.emit(e)
        await poll_until(lambda: stored_is(service, 3), what="3 rows")
        rows = {row.event_id: row for row in (await query(nc, limit=10)).rows}
    for e in sent:
        got = rows[e.event_id]
        assert got.ts == pytest.approx(e.ts, abs=1e-6)
        chain = {"ts", "producer", "seq", "prev_hash", "hash"}  # the publisher links each event on its chain
        assert got.model_dump(exclude=chain) == e.model_dump(exclude=chain)
        assert got.producer == publisher.chain.producer and got.seq >= 1 and got.hash


async def test_same_event_twice_is_stored_once(audit, publisher: AuditPublisher, nc: NATS) -> None:
    js = nc.jetstream()
    e = event(7)
    publisher.emit(e)
    publisher.emit(e)  # a producer retry: the same event_id and ts, so the same sorting key
    await poll_until(lambda: drained(publisher), what="publisher drained")
    # a copy the server cannot dedup (other msg id) of the event exactly as it was published (linked on
    # the chain, its ts on whole microseconds): the writer must not store it twice
    published = audit_events((await js.get_msg(subjects.AUDIT_STREAM, seq=1)).data or b"")
    assert {p.event_id for p in published} == {e.event_id}
    copy = published[0].model_dump_json().encode()
    await js.publish(publisher.subject, copy, headers={"Nats-Msg-Id": "x"})
    assert (await js.stream_info(subjects.AUDIT_STREAM)).state.messages == 2
    async with audit() as service:
        await poll_until(lambda: consumer_idle(js), what="both copies settled")
        assert await stored(service) == 1
        assert [row.event_id for row in (await query(nc, limit=10)).rows] == [e.event_id]


def test_event_ids_the_lookup_must_escape_are_found_and_not_stored_twice(chdb_url: str) -> None:
    """The writer looks a batch's event ids up before inserting it; an id with a quote, a backslash
    or a control character must match itself as stored, or its redelivery would be stored again."""
    ids = ["it's", "back\\slash", "tick`", "tab\there", "new\nline", "car\rriage", "\\N", "é漢", "{ids:String}", "x"]
    rows = [to_row(event(i, event_id=event_id, ts=1.7e9 + i)) for i, event_id in enumerate(ids)]
    store = ClickHouseStore(chdb_url)
    try:
        assert store.write(rows) == len(ids)
        assert store.write(rows) == 0
        assert store.write([*rows[:3], to_row(event(99, ts=1.7e9))]) == 1
        assert store.count() == len(ids) + 1
        assert {row.event_id for row in store.chain(rows[0][STORED_COLUMNS.index("producer")], None)} >= set(ids)
    finally:
        store.close()


def test_event_ids_of_any_length_are_found_by_the_lookup_and_not_stored_twice(chdb_url: str) -> None:
    """The embedded engine reads a batch's ids from a file, each prefixed by its length (a varint of one,
    two or three bytes): ids on either side of those lengths, and a NUL, must match themselves as stored."""
    ids = ["a" * 127, "b" * 128, "c" * 300, "d" * 16_383, "e" * 16_384, "nul\x00byte", "", "z"]
    rows = [to_row(event(i, event_id=event_id, ts=1.7e9 + i)) for i, event_id in enumerate(ids)]
    store = ClickHouseStore(chdb_url)
    try:
        assert store.write(rows) == len(ids)
        assert store.write(list(reversed(rows))) == 0
        assert store.write([*rows[1:4], to_row(event(99, event_id="b" * 129, ts=1.7e9 + 1))]) == 1
        assert store.count() == len(ids) + 1
    finally:
        store.close()


async def test_events_published_while_audit_is_down_are_written_when_it_starts(
    audit, publisher: AuditPublisher
) -> None:
    sent = [event(i) for i in range(750)]
    for e in sent:
        publisher.emit(e)
    await poll_until(lambda: drained(publisher), what="publisher drained")
    async with audit() as service:
        await poll_until(lambda: stored_is(service, len(sent)), what="all events written")


async def test_restarting_the_audit_service_mid_stream_loses_nothing(
    audit, publisher: AuditPublisher, nc: NATS
) -> None:
    total = 3000
    restarted = asyncio.Event()

    async def produce() -> None:
        for i in range(total):
            publisher.emit(event(i))
            if i % 50 == 0:
                await asyncio.sleep(0)  # interleave with the writer like live traffic
            if i == total // 2:
                await restarted.wait()

    producer = asyncio.create_task(produce())
    async with audit(batch_size=50) as first:
        await poll_until(lambda: _more_than(first, 0), what="the first writes")
    restarted.set()  # half of the events arrive while no audit service runs
    async with audit(batch_size=50) as second:
        await producer
        await poll_until(lambda: stored_is(second, total), what="every event written once")
        await poll_until(lambda: consumer_idle(nc.jetstream()), what="all acked")


async def _more_than(service: AuditService, n: int) -> bool:
    return await stored(service) > n


async def test_nats_restart_loses_nothing(audit, nats_server: EmbeddedNats, publisher: AuditPublisher) -> None:
    async with audit() as service:
        for i in range(200):
            publisher.emit(event(i))
        await poll_until(lambda: stored_is(service, 200), what="first 200")
        nats_server.stop()
        for i in range(200, 400):  # queued in the publisher while NATS is down
            publisher.emit(event(i))
        nats_server.start()
        await poll_until(lambda: stored_is(service, 400), what="all 400 after the restart")


def _audit_process(python_exe: str, nats_url: str, chdb_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {"BASTION_NATS_URL": nats_url, "BASTION_CLICKHOUSE_URL": chdb_url, "BASTION_BATCH_SIZE": "50"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [python_exe, "-m", "services.audit"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=kill_with_parent,
        )


async def test_killed_audit_process_loses_nothing_and_sigterm_stops_it_cleanly(
    python_exe: str, nats_url: str, chdb_url: str, tmp_path: Path, publisher: AuditPublisher, nc: NATS
) -> None:
    """`python -m services.audit` as ops run it: SIGKILL mid-stream, restart, SIGTERM. Events the killed
    process held unacked come back after the consumer's ack_wait (30 s), so this test takes that long."""
    total = 2000
    log = tmp_path / "audit.log"
    first = _audit_process(python_exe, nats_url, chdb_url, log)
    try:
        for i in range(total // 2):
            publisher.emit(event(i))
        await poll_until(lambda: _has_rows(nc), what="the first process to write")
        first.kill()  # a crash: no drain, no ack flush, the store lock dies with it
        await asyncio.to_thread(first.wait, 30)
        for i in range(total // 2, total):
            publisher.emit(event(i))
        second = _audit_process(python_exe, nats_url, chdb_url, log)
        try:

            async def second_ready() -> bool:
                return log.read_text().count("audit ready") >= 2

            await poll_until(second_ready, what="the second process to start")
            await poll_until(lambda: consumer_idle(nc.jetstream()), within=90, what="every event acked")
            second.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(second.wait, 30) == 0, log.read_text()
        finally:
            _end(second)
    finally:
        _end(first)
    store = ClickHouseStore(chdb_url)  # the stopped process released the store
    try:
        assert await asyncio.to_thread(store.count) == total
    finally:
        await asyncio.to_thread(store.close)


async def _has_rows(nc: NATS) -> bool:
    try:
        return bool((await query(nc, limit=1)).rows)
    except nats.errors.NoRespondersError:
        return False


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
