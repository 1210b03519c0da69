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
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from rich.console import Console

from bastion_audit import AuditService
from bastion_audit.schema import to_row
from bastion_audit.store import ClickHouseStore
from bastion_audit.writer import DURABLE
from bastion_cli.audit import tail
from bastion_cli.stack import EmbeddedNats, free_port, kill_with_parent
from bastion_common import subjects
from bastion_common.audit_publisher import AuditPublisher
from bastion_common.messages import AuditEvent, AuditQuery, AuditRows, audit_events
from bastion_common.settings import AuditSettings
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

WAIT = 60.0
"""Upper bound for a condition; tests return as soon as it holds (a lost ack is redelivered after 30 s)."""


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
    async with AuditPublisher(nc) as pub:
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
        await poll_until(lambda: _count_is(service, 3), what="3 rows")
        rows = {row.event_id: row for row in (await query(nc, limit=10)).rows}
    for e in sent:
        got = rows[e.event_id]
        assert got.ts == pytest.approx(e.ts, abs=1e-6)
        chain = {"ts", "producer", "seq", "prev_hash", "hash"}  # the publisher links each event on its chain
        assert got.model_dump(exclude=chain) == e.model_dump(exclude=chain)
        assert got.producer == publisher.chain.producer and got.seq >= 1 and got.hash


async def _count_is(service: AuditService, n: int) -> bool:
    return await stored(service) == n


async def test_same_event_twice_is_stored_once(audit, publisher: AuditPublisher, nc: NATS) -> None:
    js = nc.jetstream()
    e = event(7)
    publisher.emit(e)
    publisher.emit(e)  # a producer retry: the same event_id and ts, so the same sorting key
    await poll_until(lambda: _zero(publisher), what="publisher drained")
    # a copy the server cannot dedup (other msg id) of the event exactly as it was published (linked on
    # the chain, its ts on whole microseconds): ClickHouse must collapse it
    published = audit_events((await js.get_msg(subjects.AUDIT_STREAM, seq=1)).data or b"")
    assert {p.event_id for p in published} == {e.event_id}
    copy = published[0].model_dump_json().encode()
    await js.publish(subjects.audit_subject("tool_call"), copy, headers={"Nats-Msg-Id": "x"})
    assert (await js.stream_info(subjects.AUDIT_STREAM)).state.messages == 2
    async with audit() as service:
        await poll_until(lambda: consumer_idle(js), what="both copies settled")
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
    await poll_until(lambda: _zero(publisher), what="publisher drained")
    async with audit() as service:
        await poll_until(lambda: _count_is(service, len(sent)), what="all events written")


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
        await poll_until(lambda: _count_is(second, total), what="every event written once")
        await poll_until(lambda: consumer_idle(nc.jetstream()), what="all acked")


async def _more_than(service: AuditService, n: int) -> bool:
    return await stored(service) > n


async def test_nats_restart_loses_nothing(audit, nats_server: EmbeddedNats, publisher: AuditPublisher) -> None:
    async with audit() as service:
        for i in range(200):
            publisher.emit(event(i))
        await poll_until(lambda: _count_is(service, 200), what="first 200")
        nats_server.stop()
        for i in range(200, 400):  # queued in the publisher while NATS is down
            publisher.emit(event(i))
        nats_server.start()
        await poll_until(lambda: _count_is(service, 400), what="all 400 after the restart")


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
        await poll_until(lambda: _count_is(service, len(valid)), what="valid events written")
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
        await poll_until(lambda: _count_is(service, len(sent)), what="every event written")


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
        await poll_until(lambda: redelivered(js), what="a failed insert to be nak'd")
        assert store_lock_holder.stdin is not None
        store_lock_holder.stdin.close()  # the other process lets go of the store
        await asyncio.to_thread(store_lock_holder.wait, 30)
        await poll_until(lambda: _count_is(service, len(sent)), what="every event written after recovery")
        await poll_until(lambda: consumer_idle(js), what="all acked")


# ------------------------------------------------------------------ publisher


async def test_publisher_overflow_is_logged_not_raised(nc: NATS, caplog: pytest.LogCaptureFixture) -> None:
    pub = AuditPublisher(nc, max_queue=2)
    assert [pub.emit(event(i)) for i in range(3)] == [True, True, False]
    assert pub.dropped == 1
    assert "buffer full" in caplog.text
    async with pub:  # the two queued events are published on start and drained on close
        pass
    assert pub.published == 2 and pub.pending == 0
    assert not pub.emit(event(9))  # closed: refused, not raised


async def test_a_huge_event_is_cut_and_never_blocks_the_ones_behind_it(audit, tmp_path: Path) -> None:
    """Finding 1: a 3.8 MB tool name (and the error quoting it) against a NATS with its default 1 MB
    max payload used to be retried forever, and no later event on that publisher was ever stored."""
    server = EmbeddedNats(tmp_path / "nats-1mb", max_payload_mb=1).start()
    try:
        client = await nats.connect(server.url)
        name = "x" * 3_800_000
        huge = event(0, status="error", name=name, error=f"Unknown tool: {name!r}", error_kind="unknown_tool")
        ordinary = [event(i) for i in range(1, 101)]
        async with AuditPublisher(client) as pub, audit(nats_url=server.url) as service:
            assert pub.emit(huge)
            for e in ordinary:
                assert pub.emit(e)
            await poll_until(lambda: _count_is(service, 101), "the huge event and the 100 behind it")
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
        await poll_until(lambda: _count_is(service, 40), "the 40 ordinary events")
        await poll_until(lambda: _zero(publisher), "publisher drained")
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
    await poll_until(lambda: _zero(publisher), "publisher drained")
    assert publisher.dead_lettered == 1 and publisher.published == 1
    dead = await nc.jetstream().pull_subscribe(subjects.AUDIT_DEAD, durable="t", stream=subjects.AUDIT_DEAD_STREAM)
    (letter,) = await dead.fetch(1, timeout=5)
    kept = AuditEvent.model_validate_json(letter.data)
    assert kept.event_id == broken.event_id and kept.name == "lone ? surrogate"
    assert letter.headers is not None and "cannot be serialized" in letter.headers["Bastion-Dead-Reason"]


async def test_nats_killed_and_restarted_loses_no_event_and_piles_up_no_copies(
    audit, nats_server: EmbeddedNats
) -> None:
    """Finding 7: nats-server SIGKILLed and restarted on the same port (JetStream on disk). While it
    is away, events wait in the publisher (not as retried copies in the client's send buffer), and
    all of them are stored once it is back."""
    client = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    async with AuditPublisher(client, publish_timeout=0.5) as pub, audit() as service:
        for i in range(200):
            pub.emit(event(i))
        await poll_until(lambda: _count_is(service, 200), "first 200")
        assert nats_server.proc is not None
        nats_server.proc.kill()  # SIGKILL: no goodbye to the clients, no flush
        await asyncio.to_thread(nats_server.proc.wait, 10)
        for i in range(200, 500):
            pub.emit(event(i))
        await poll_until(lambda: _true(pub.holding), "the publisher to hold events for NATS")
        assert pub.pending == 300
        assert client.pending_data_size == 0  # nothing sent into the dead connection, so no copies
        nats_server.start()  # same port, same JetStream store
        await poll_until(lambda: _count_is(service, 500), "all 500 after the restart")
        assert pub.dropped == 0 and not pub.holding
    await client.close()


async def _true(value: bool) -> bool:
    return value


async def test_the_buffer_is_bounded_in_bytes_too_and_events_are_cut_before_they_are_held(nc: NATS) -> None:
    pub = AuditPublisher(nc, max_bytes=10_000)  # not started: everything emitted stays held
    assert pub.emit(event(0, name="n" * 3_800_000))  # held as its first KiB, not 3.8 MB
    accepted = [pub.emit(event(i, error="e" * 3000)) for i in range(1, 6)]
    assert accepted == [True, True, False, False, False]
    assert pub.dropped == 3 and pub.pending == 3


async def test_a_full_buffer_drops_loudly_and_counts(
    nats_server: EmbeddedNats, caplog: pytest.LogCaptureFixture
) -> None:
    client = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    async with AuditPublisher(client, max_queue=10) as pub:
        nats_server.stop()
        await poll_until(lambda: _true(not client.is_connected), "the client to notice")
        pub.emit(event(0))
        await poll_until(lambda: _true(pub.holding), "the publisher to hold events for NATS")
        accepted = [pub.emit(event(i)) for i in range(1, 21)]
        assert accepted == [True] * 10 + [False] * 10  # one event in hand, ten in the buffer
        assert pub.dropped == 10 and pub.pending == 11
        assert "buffer full" in caplog.text
        nats_server.start()
        await poll_until(lambda: _zero(pub), "the held events published")
        assert pub.published == 11
    await client.close()


# ------------------------------------------------------------------ read path


async def test_audit_query_returns_newest_first_with_filters(audit, publisher: AuditPublisher, nc: NATS) -> None:
    base = time.time()
    sent = [event(i, ts=base + i) for i in range(12)]
    async with audit():
        for e in sent:
            publisher.emit(e)
        await poll_until(lambda: _rows_are(nc, 12), what="12 rows")
        newest_first = [e.event_id for e in reversed(sent)]
        assert [r.event_id for r in (await query(nc, limit=5)).rows] == newest_first[:5]
        by_key = (await query(nc, limit=100, key_name="key-1")).rows
        assert [r.event_id for r in by_key] == [e.event_id for e in reversed(sent) if e.key_name == "key-1"]
        both = (await query(nc, limit=100, key_name="key-1", server="srv-0")).rows
        expected = [e.event_id for e in reversed(sent) if e.key_name == "key-1" and e.server == "srv-0"]
        assert [r.event_id for r in both] == expected and expected
        reply = await nc.request(subjects.AUDIT_QUERY, b'{"limit": 0}', timeout=10)
        assert "invalid request: limit" in (AuditRows.model_validate_json(reply.data).error or "")


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
        await poll_until(lambda: _rows_are(nc, 4), what="4 rows")
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
        await poll_until(lambda: _contains(out, "latency ms"), what="the history table")
        publisher.emit(event(42))
        await poll_until(lambda: _contains(out, "tool_42"), what="the live event")
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
        await poll_until(lambda: _contains(out, "latency ms"), what="the history table")
        nats_server.stop()
        assert await asyncio.wait_for(follower, WAIT) == 1
        assert f"lost the connection to NATS at {nats_url}" in out.getvalue()
        nats_server.start()  # so the audit service stops cleanly


# ------------------------------------------------------------------ schema migration


def test_a_table_of_the_first_release_is_migrated_and_keeps_its_rows(chdb_url: str) -> None:
    """Columns added later (`execution`, `truncated`) reach an existing table by ALTER ... ADD COLUMN;
    its rows stay, reading back with the new columns' defaults."""
    first_release = (
        "CREATE DATABASE IF NOT EXISTS bastion",
        "CREATE TABLE bastion.audit_events (v UInt16, event_id String, ts DateTime64(6, 'UTC'), "
        "kind LowCardinality(String), trace_id Nullable(String), key_id String, key_name LowCardinality(String), "
        "server LowCardinality(String), tool LowCardinality(String), name String, status LowCardinality(String), "
        "error_kind LowCardinality(Nullable(String)), error_code Nullable(Int64), error Nullable(String), "
        "latency_ms Float64, upstream_ms Nullable(Float64), request_bytes UInt64, response_bytes UInt64) "
        "ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(ts) ORDER BY (key_name, server, tool, ts, event_id)",
        "INSERT INTO bastion.audit_events VALUES (1, 'old', now64(6), 'tool_call', NULL, 'k', 'ci', 'srv', 't', "
        "'srv__t', 'ok', NULL, NULL, NULL, 1.5, NULL, 10, 20)",
    )
    code = (
        "import clickhouse_connect\n"
        f"client = clickhouse_connect.get_client(dsn={chdb_url!r})\n"
        f"for statement in {first_release!r}:\n"
        "    client.command(statement)\n"
        "client.close()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)  # the engine holds one path per process
    store = ClickHouseStore(chdb_url)
    try:
        new = event(1, execution="may_have_run", truncated={"name": 4_000_000}, ts=time.time() + 1)
        store.insert([to_row(new)])
        rows = {row.event_id: row for row in store.recent(AuditQuery(limit=10))}
    finally:
        store.close()
    assert rows["old"].execution is None and rows["old"].truncated == {} and rows["old"].response_bytes == 20
    assert rows[new.event_id].execution == "may_have_run" and rows[new.event_id].truncated == {"name": 4_000_000}
