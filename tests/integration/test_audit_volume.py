"""Nothing lost at volume: 10,000 audit events published while the audit service
(`python -m services.audit`, as ops run it) starts against a store it cannot open, is SIGKILLed
mid-stream and restarted, and nats-server restarts; ClickHouse then holds exactly 10,000 distinct
events, no copies, and the hash chain and the signed checkpoints verify.

Events the killed process held unacked come back after the consumer's ack_wait (30 s), so this test
takes about a minute. It prints the recovery time and the backlog drain rate (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from cli.stack import EmbeddedNats, kill_with_parent
from libs.common.analytics.queries import AnalyticsAnswer, AnalyticsQuery, engine_limits, read_only
from libs.common.audit.audit_chain import producer_id
from libs.common.audit.audit_publisher import AuditPublisher
from libs.common.bus.nats import kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent, AuditQuery, AuditRows, KeyRecord
from services.audit.auditor import Auditor
from services.audit.store import ClickHouseStore
from services.audit.writer import DURABLE
from tests.support.audit_pipeline import hold_store
from tests.support.polling import poll_until
from tests.support.stores import declared

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TOTAL = 10_000
CHECKPOINT_KEY = "volume-test-checkpoint-key-0123456789"


def _event(i: int) -> AuditEvent:
    return AuditEvent(
        key_id=f"id-{i % 7}",
        key_name=f"key-{i % 7}",
        server=f"srv-{i % 3}",
        tool=f"tool_{i % 11}",
        name=f"srv-{i % 3}__tool_{i % 11}",
        status="ok" if i % 13 else "error",
        latency_ms=1.0 + i % 50,
        cost_usd=0.001,
    )


class AuditProcess:
    """`python -m services.audit` with a signing key and frequent checkpoints; output in `log`."""

    def __init__(self, nats_url: str, chdb_url: str, log: Path) -> None:
        self.log = log
        env = os.environ | {
            "BASTION_NATS_URL": nats_url,
            "BASTION_CLICKHOUSE_URL": chdb_url,
            "BASTION_BATCH_SIZE": "500",
            "BASTION_FLUSH_INTERVAL": "0.2",
            "BASTION_CHECKPOINT_KEY": CHECKPOINT_KEY,
            "BASTION_CHECKPOINT_INTERVAL": "1",
        }
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.audit"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=kill_with_parent,
            )

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _release(holder: subprocess.Popen[bytes]) -> None:
    if holder.stdin is not None:
        holder.stdin.close()
    holder.wait(30)
    if holder.stdout is not None:
        holder.stdout.close()


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    yield client
    await client.close()


async def _has_rows(nc: NATS) -> bool:
    try:
        reply = await nc.request(subjects.AUDIT_QUERY, AuditQuery(limit=1).model_dump_json().encode(), timeout=10)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return False
    return bool(AuditRows.model_validate_json(reply.data).rows)


async def _count(nc: NATS) -> int:
    """Distinct events the running audit service has stored (asked over NATS, as the CLI asks)."""
    query = AnalyticsQuery(sql="SELECT count() FROM bastion.audit_events FINAL")
    reply = await nc.request(subjects.ANALYTICS_QUERY, query.model_dump_json().encode(), timeout=30)
    answer = AnalyticsAnswer.model_validate_json(reply.data)
    assert answer.error is None, answer.error
    return int(answer.rows[0][0])


async def _count_is(nc: NATS, n: int) -> bool:
    try:
        return await _count(nc) == n
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return False


async def _drained(nc: NATS) -> bool:
    try:
        info = await nc.jetstream().consumer_info(subjects.AUDIT_STREAM, DURABLE)
    except Exception:  # NATS reconnecting
        return False
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_ten_thousand_events_survive_kill_restart_store_outage_and_nats_restart(
    nats_server: EmbeddedNats, nc: NATS, tmp_path: Path
) -> None:
    chdb_url = f"chdb://{tmp_path / 'clickhouse'}"
    log = tmp_path / "audit.log"
    sent = [_event(i) for i in range(TOTAL)]
    await declared(nc.jetstream(), subjects.KV_KEYS)  # as its owner, the admin role, would
    keys = await kv_bucket(nc.jetstream(), subjects.KV_KEYS)
    for key_id in {e.key_id for e in sent}:  # the keys exist: no event is flagged for naming an unknown one
        await keys.put(key_id, KeyRecord(id=key_id, name=key_id).model_dump_json().encode())
    quarter = TOTAL // 4
    holder = hold_store(chdb_url)
    first = AuditProcess(nats_server.url, chdb_url, log)
    second: AuditProcess | None = None
    try:
        async with AuditPublisher(nc, producer=producer_id("ingress")) as publisher:
            # 1. ClickHouse unavailable: the audit service cannot open its store; events wait in the stream
            for e in sent[:quarter]:
                assert publisher.emit(e)
            await poll_until(lambda: _ready(log, 1), what="the first audit process to start", within=60)
            await poll_until(lambda: _zero(publisher), what="the first quarter in the stream", within=60)
            outage_ended = time.monotonic()
            _release(holder)
            await poll_until(lambda: _has_rows(nc), what="writes after the store came back", within=90)
            store_recovery = time.monotonic() - outage_ended

            # 2. SIGKILL mid-stream, publishing on
            for e in sent[quarter : 2 * quarter]:
                assert publisher.emit(e)
            first.proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(first.proc.wait, 30)

            # 3. nats-server restarts while the audit service is down; the publisher holds events meanwhile
            for e in sent[2 * quarter : 3 * quarter]:
                assert publisher.emit(e)
            nats_server.stop()
            nats_server.start()
            await poll_until(lambda: _zero(publisher), what="the third quarter published after NATS", within=60)

            # 4. the audit service comes back to a backlog; the last quarter arrives while it drains
            restarted = time.monotonic()
            second = AuditProcess(nats_server.url, chdb_url, log)
            await poll_until(lambda: _ready(log, 2), what="the second audit process to start", within=60)
            ready = time.monotonic()
            rows_at_ready = await _count(nc)
            for e in sent[3 * quarter :]:
                assert publisher.emit(e)
            await poll_until(lambda: _zero(publisher), what="every event published", within=60)
            # what the killed process held unacked comes back after the consumer's ack_wait (30 s)
            await poll_until(lambda: _count_is(nc, TOTAL), what="every event stored", within=150)
            stored = time.monotonic()
            await poll_until(lambda: _drained(nc), what="every event acked", within=60)

        second.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.proc.wait, 30) == 0, log.read_text()[-4000:]
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.end()
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        for pipe in (holder.stdin, holder.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()

    backlog = TOTAL - rows_at_ready
    print(  # the numbers docs/benchmarks.md reports
        f"\nvolume: {TOTAL} events; store back -> first write {store_recovery:.1f} s; "
        f"audit restart -> ready {ready - restarted:.1f} s with {rows_at_ready} stored; "
        f"the other {backlog} stored {stored - ready:.1f} s later ({backlog / (stored - ready):.0f} events/s, "
        "ack_wait redelivery included)"
    )
    store = ClickHouseStore(chdb_url)  # the stopped process released it
    try:
        count = "SELECT count() AS rows, uniqExact(event_id) AS distinct_ids FROM bastion.audit_events FINAL"
        counted = await asyncio.to_thread(_select, store, AnalyticsQuery(sql=count))
        ids = "SELECT event_id FROM bastion.audit_events FINAL"
        stored_ids = await asyncio.to_thread(_select, store, AnalyticsQuery(sql=ids, max_rows=100_000))
        verdict = await asyncio.to_thread(Auditor(store, CHECKPOINT_KEY.encode()).verify)
    finally:
        await asyncio.to_thread(store.close)
    assert counted.error is None and counted.rows == [[TOTAL, TOTAL]]
    assert {row[0] for row in stored_ids.rows} == {e.event_id for e in sent}
    assert verdict.ok, verdict
    assert verdict.events == TOTAL and verdict.chains == 1  # checkpoints present are checked too (signed key)


def _ready(log: Path, n: int) -> bool:
    return log.exists() and log.read_text(errors="replace").count("audit ready") >= n


def _select(store: ClickHouseStore, query: AnalyticsQuery) -> AnalyticsAnswer:
    limits = engine_limits(query, max_bytes=64 << 20, memory=1 << 30, threads=2)
    return store.analytics(query, read_only(query.sql), limits, "volume-test")


async def _zero(publisher: AuditPublisher) -> bool:
    return publisher.pending == 0
