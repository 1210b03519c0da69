"""Audit pipeline against a real nats-server and the real ClickHouse engine (chdb): the audit log
readable over NATS and the CLI, and a table of the first release migrated in place."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time

import pytest
from nats.aio.client import Client as NATS
from rich.console import Console

from cli.audit import tail
from cli.ports import free_port
from cli.stack import EmbeddedNats
from libs.common.audit.audit_publisher import AuditPublisher
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditQuery, AuditRows
from services.audit.schema import STORED_COLUMNS, to_row
from services.audit.store import ClickHouseStore
from tests.support.audit_pipeline import WAIT, event, query
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration


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
    """Columns added later (`execution`, `truncated`, ...) and the indexes reach an existing table by
    ALTER ... ADD; its rows stay, reading back with the new columns' defaults."""
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
    listed = (
        "import clickhouse_connect, json\n"
        f"client = clickhouse_connect.get_client(dsn={chdb_url!r})\n"
        "where = \"database = 'bastion' AND table = 'audit_events'\"\n"
        "names = lambda system: [r[0] for r in client.query(f'SELECT name FROM {system} WHERE {where}').result_rows]\n"
        "print(json.dumps([names('system.columns'), names('system.data_skipping_indices')]))\n"
    )
    found = subprocess.run([sys.executable, "-c", listed], check=True, timeout=120, capture_output=True, text=True)
    columns, indexes = json.loads(found.stdout.strip().splitlines()[-1])
    assert columns == list(STORED_COLUMNS)  # every migration ran, in order
    assert sorted(indexes) == ["event_id_bloom", "ts_minmax"]
