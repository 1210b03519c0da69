"""Audit pipeline against a real nats-server and the real ClickHouse engine (chdb): no event lost,
none counted twice, bad messages dead-lettered, and the audit log readable over NATS and the CLI.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from rich.console import Console

from bastion_audit import AuditService
from bastion_audit.store import ClickHouseStore
from bastion_audit.writer import DURABLE
from bastion_cli.audit import tail
from bastion_cli.stack import EmbeddedNats, free_port, kill_with_parent
from bastion_common import subjects
from bastion_common.audit_publisher import AuditPublisher
from bastion_common.messages import AuditEvent, AuditQuery, AuditRows
from bastion_common.settings import AuditSettings

pytestmark = pytest.mark.integration

WAIT = 60.0
"""Upper bound for a condition; tests return as soon as it holds (a lost ack is redelivered after 30 s)."""


async def eventually(check: Callable[[], Awaitable[bool]], within: float = WAIT, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


def event(i: int = 0, **fields: object) -> AuditEvent:
    base: dict[str, object] = {
        "key_name": f"key-{i % 3}",
        "key_id": f"id-{i % 3}",
        "server": f"srv-{i % 2}",
        "tool": f"tool_{i}",
        "name": f"srv-{i % 2}__tool_{i}",
        "status": "ok",
        "latency_ms": 1.5 + i,
    }
    return AuditEvent.model_validate(base | fields)


@pytest.fixture
def chdb_url(tmp_path: Path) -> str:
    return f"chdb://{tmp_path / 'clickhouse'}"


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    yield client
    await client.close()


@pytest.fixture
async def publisher(nc: NATS) -> AsyncIterator[AuditPublisher]:
    async with AuditPublisher(nc.jetstream()) as pub:
        yield pub


@pytest.fixture
async def audit(nats_url: str, chdb_url: str) -> AsyncIterator[Callable[..., object]]:
    """`async with audit(**overrides) as service`: an AuditService that is always stopped, because the
    embedded engine can hold only one store path per process and the next test needs its own."""
    started: list[AuditService] = []

    @asynccontextmanager
    async def run(**overrides: object) -> AsyncIterator[AuditService]:
        values = {"nats_url": nats_url, "clickhouse_url": chdb_url, "batch_size": 100, "flush_interval": 0.05}
        service = AuditService(AuditSettings(**(values | overrides)))
        started.append(service)
        await service.start()
        try:
            yield service
        finally:
            started.remove(service)
            await service.stop()

    yield run
    for service in started:
        await service.stop()


async def stored(service: AuditService) -> int:
    return await asyncio.to_thread(service.store.count)


async def query(nc: NATS, **fields: object) -> AuditRows:
    reply = await nc.request(subjects.AUDIT_QUERY, AuditQuery(**fields).model_dump_json().encode(), timeout=10)
    return AuditRows.model_validate_json(reply.data)


async def consumer_idle(js: JetStreamContext) -> bool:
    """Every message in the stream was delivered and settled (acked or terminated)."""
    info = await js.consumer_info(subjects.AUDIT_STREAM, DURABLE)
    return info.num_pending == 0 and info.num_ack_pending == 0


async def redelivered(js: JetStreamContext) -> bool:
    """The writer gave events back (nak) at least once instead of acking them."""
    info = await js.consumer_info(subjects.AUDIT_STREAM, DURABLE)
    return bool(info.num_redelivered)


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
        await eventually(lambda: _count_is(service, 3), what="3 rows")
        rows = {row.event_id: row for row in (await query(nc, limit=10)).rows}
    for e in sent:
        got = rows[e.event_id]
        assert got.ts == pytest.approx(e.ts, abs=1e-6)
        assert got.model_dump(exclude={"ts"}) == e.model_dump(exclude={"ts"})


async def _count_is(service: AuditService, n: int) -> bool:
    return await stored(service) == n


async def test_same_event_twice_is_stored_once(audit, publisher: AuditPublisher, nc: NATS) -> None:
    js = nc.jetstream()
    e = event(7)
    publisher.emit(e)
    publisher.emit(e)  # a producer retry: same Nats-Msg-Id, dropped by the server
    await eventually(lambda: _zero(publisher), what="publisher drained")
    # a copy the server cannot dedup (other msg id): ClickHouse must collapse it
    await js.publish(subjects.audit_subject("tool_call"), e.model_dump_json().encode(), headers={"Nats-Msg-Id": "x"})
    assert (await js.stream_info(subjects.AUDIT_STREAM)).state.messages == 2
    async with audit() as service:
        await eventually(lambda: consumer_idle(js), what="both copies settled")
        assert await stored(service) == 1
        assert [row.event_id for row in (await query(nc, limit=10)).rows] == [e.event_id]


async def _zero(publisher: AuditPublisher) -> bool:
    return publisher.pending == 0


async def test_events_published_while_audit_is_down_are_written_when_it_starts(
    audit, publisher: AuditPublisher
) -> None:
    sent = [event(i) for i in range(750)]
    for e in sent:
        publisher.emit(e)
    await eventually(lambda: _zero(publisher), what="publisher drained")
    async with audit() as service:
        await eventually(lambda: _count_is(service, len(sent)), what="all events written")


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
        await eventually(lambda: _more_than(first, 0), what="the first writes")
    restarted.set()  # half of the events arrive while no audit service runs
    async with audit(batch_size=50) as second:
        await producer
        await eventually(lambda: _count_is(second, total), what="every event written once")
        await eventually(lambda: consumer_idle(nc.jetstream()), what="all acked")


async def _more_than(service: AuditService, n: int) -> bool:
    return await stored(service) > n


async def test_nats_restart_loses_nothing(audit, nats_server: EmbeddedNats, publisher: AuditPublisher) -> None:
    async with audit() as service:
        for i in range(200):
            publisher.emit(event(i))
        await eventually(lambda: _count_is(service, 200), what="first 200")
        nats_server.stop()
        for i in range(200, 400):  # queued in the publisher while NATS is down
            publisher.emit(event(i))
        nats_server.start()
        await eventually(lambda: _count_is(service, 400), what="all 400 after the restart")


def _audit_process(python_exe: str, nats_url: str, chdb_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {"BASTION_NATS_URL": nats_url, "BASTION_CLICKHOUSE_URL": chdb_url, "BASTION_BATCH_SIZE": "50"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [python_exe, "-m", "bastion_audit"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=kill_with_parent,
        )


async def test_killed_audit_process_loses_nothing_and_sigterm_stops_it_cleanly(
    python_exe: str, nats_url: str, chdb_url: str, tmp_path: Path, publisher: AuditPublisher, nc: NATS
) -> None:
    """`python -m bastion_audit` as ops run it: SIGKILL mid-stream, restart, SIGTERM. Events the killed
    process held unacked come back after the consumer's ack_wait (30 s), so this test takes that long."""
    total = 2000
    log = tmp_path / "audit.log"
    first = _audit_process(python_exe, nats_url, chdb_url, log)
    try:
        for i in range(total // 2):
            publisher.emit(event(i))
        await eventually(lambda: _has_rows(nc), what="the first process to write")
        first.kill()  # a crash: no drain, no ack flush, the store lock dies with it
        await asyncio.to_thread(first.wait, 30)
        for i in range(total // 2, total):
            publisher.emit(event(i))
        second = _audit_process(python_exe, nats_url, chdb_url, log)
        try:
            async def second_ready() -> bool:
                return log.read_text().count("audit ready") >= 2

            await eventually(second_ready, what="the second process to start")
            await eventually(lambda: consumer_idle(nc.jetstream()), within=90, what="every event acked")
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


# ------------------------------------------------------------------ bad messages and outages


async def test_garbage_is_dead_lettered_and_does_not_block_valid_events(audit, nc: NATS) -> None:
    js = nc.jetstream()
    subject = subjects.audit_subject("tool_call")
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
        await eventually(lambda: _count_is(service, len(valid)), what="valid events written")
        await eventually(lambda: consumer_idle(js), what="garbage terminated, not pending")

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
        await eventually(lambda: redelivered(js), what="a failed insert to be nak'd")
        assert service.writer is not None and service.writer.written == 0
        rows = await query(nc)
        assert rows.error and "secret" not in rows.error
    async with audit() as service:
        await eventually(lambda: _count_is(service, len(sent)), what="every event written")


@pytest.fixture
def store_lock_holder(chdb_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """Another process holding the embedded store open: the audit service cannot open it."""
    path = chdb_url.removeprefix("chdb://")
    code = (
        "import sys, clickhouse_connect\n"
        f"client = clickhouse_connect.get_client(dsn={chdb_url!r})\n"
        "print('holding', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"holding\n", f"could not lock {path}"
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
        await eventually(lambda: redelivered(js), what="a failed insert to be nak'd")
        assert store_lock_holder.stdin is not None
        store_lock_holder.stdin.close()  # the other process lets go of the store
        await asyncio.to_thread(store_lock_holder.wait, 30)
        await eventually(lambda: _count_is(service, len(sent)), what="every event written after recovery")
        await eventually(lambda: consumer_idle(js), what="all acked")


# ------------------------------------------------------------------ publisher


async def test_publisher_overflow_is_logged_not_raised(nc: NATS, caplog: pytest.LogCaptureFixture) -> None:
    pub = AuditPublisher(nc.jetstream(), max_queue=2)
    assert [pub.emit(event(i)) for i in range(3)] == [True, True, False]
    assert pub.dropped == 1
    assert "queue full" in caplog.text
    async with pub:  # the two queued events are published on start and drained on close
        pass
    assert pub.published == 2 and pub.pending == 0
    assert not pub.emit(event(9))  # closed: refused, not raised


# ------------------------------------------------------------------ read path


async def test_audit_query_returns_newest_first_with_filters(audit, publisher: AuditPublisher, nc: NATS) -> None:
    base = time.time()
    sent = [event(i, ts=base + i) for i in range(12)]
    async with audit():
        for e in sent:
            publisher.emit(e)
        await eventually(lambda: _rows_are(nc, 12), what="12 rows")
        newest_first = [e.event_id for e in reversed(sent)]
        assert [r.event_id for r in (await query(nc, limit=5)).rows] == newest_first[:5]
        by_key = (await query(nc, limit=100, key_name="key-1")).rows
        assert [r.event_id for r in by_key] == [e.event_id for e in reversed(sent) if e.key_name == "key-1"]
        both = (await query(nc, limit=100, key_name="key-1", server="srv-0")).rows
        expected = [e.event_id for e in reversed(sent) if e.key_name == "key-1" and e.server == "srv-0"]
        assert [r.event_id for r in both] == expected and expected
        reply = await nc.request(subjects.AUDIT_QUERY, b'{"limit": 0}', timeout=10)
        assert "invalid audit query" in (AuditRows.model_validate_json(reply.data).error or "")


async def _rows_are(nc: NATS, n: int) -> bool:
    return len((await query(nc, limit=100)).rows) == n


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, color_system=None), out


async def test_tail_prints_recent_events(audit, publisher: AuditPublisher, nc: NATS, nats_url: str) -> None:
    base = time.time()
    sent = [event(i, ts=base + i, error="boom" if i == 2 else None) for i in range(4)]
    async with audit():
        for e in sent:
            publisher.emit(e)
        await eventually(lambda: _rows_are(nc, 4), what="4 rows")
        console, out = _console()
        assert await tail(nats_url, limit=3, follow=False, console=console) == 0
    text = out.getvalue()
    assert "latency ms" in text and "tool_0" not in text  # limit 3: the oldest is left out
    lines = [line for line in text.splitlines() if "tool_" in line]
    assert [line.split()[4] for line in lines] == ["tool_1", "tool_2", "tool_3"]  # newest at the bottom
    assert "boom" in lines[1] and "key-2" in lines[1] and "srv-0" in lines[1] and "4.5" in lines[2]


async def test_tail_follow_prints_new_events_until_stopped(
    audit, publisher: AuditPublisher, nc: NATS, nats_url: str
) -> None:
    async with audit():
        console, out = _console()
        stop = asyncio.Event()
        follower = asyncio.create_task(tail(nats_url, limit=5, follow=True, console=console, stop=stop))
        await eventually(lambda: _contains(out, "latency ms"), what="the history table")
        publisher.emit(event(42))
        await eventually(lambda: _contains(out, "tool_42"), what="the live event")
        stop.set()
        assert await asyncio.wait_for(follower, WAIT) == 0


async def _contains(out: io.StringIO, text: str) -> bool:
    return text in out.getvalue()


async def test_tail_says_when_no_audit_service_answers(nats_url: str) -> None:
    console, out = _console()
    assert await tail(nats_url, limit=5, follow=False, console=console) == 1
    assert f"no audit service is reachable at {nats_url}; is `bastion up` running?" in out.getvalue()


async def test_tail_says_when_nats_is_unreachable() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    console, out = _console()
    assert await tail(url, limit=5, follow=False, console=console) == 1
    assert f"cannot connect to NATS at {url}" in out.getvalue()


async def test_tail_follow_ends_with_an_error_when_nats_goes_away(
    audit, nats_server: EmbeddedNats, nats_url: str
) -> None:
    async with audit():
        console, out = _console()
        follower = asyncio.create_task(tail(nats_url, limit=5, follow=True, console=console, stop=asyncio.Event()))
        await eventually(lambda: _contains(out, "latency ms"), what="the history table")
        nats_server.stop()
        assert await asyncio.wait_for(follower, WAIT) == 1
        assert f"lost the connection to NATS at {nats_url}" in out.getvalue()
        nats_server.start()  # so the audit service stops cleanly
