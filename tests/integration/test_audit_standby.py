"""Two audit replicas on one embedded ClickHouse store (chdb): one process can open it, so the second
stands by, answering nothing and fetching nothing, and takes the store over when the first dies.

Before the standby, the second replica joined the query group and the stream's consumer anyway: half
of the queries were answered "cannot open ClickHouse", and the batches it fetched were given back
with a growing delay. Both replicas are real processes (`python -m services.audit`), so the store's
lock is the real one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditQuery, AuditRows
from tests.support.audit_pipeline import event
from tests.support.polling import poll_until
from tests.support.processes import terminate

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def audit_process(nats_url: str, store: Path, name: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "BASTION_NATS_URL": nats_url,
        "BASTION_CLICKHOUSE_URL": f"chdb://{store}",
        "BASTION_INSTANCE": name,
        "BASTION_FLUSH_INTERVAL": "0.2",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.audit"], env=env, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        terminate(proc, grace=30)


async def rows(nc: NATS) -> AuditRows:
    reply = await nc.request(subjects.AUDIT_QUERY, AuditQuery(limit=1000).model_dump_json().encode(), timeout=20)
    return AuditRows.model_validate_json(reply.data)


async def publish(nc: NATS, start: int, count: int) -> None:
    js = nc.jetstream()
    for i in range(start, start + count):
        await js.publish(subjects.audit_subject("ingress", "standby-test"), event(i).model_dump_json().encode())


async def stored(nc: NATS, want: int) -> bool:
    with contextlib.suppress(nats.errors.Error, TimeoutError):
        answer = await rows(nc)
        return answer.error is None and len(answer.rows) == want
    return False


def logged(log: Path, *lines: str) -> bool:
    text = log.read_text(errors="replace") if log.exists() else ""
    return any(line in text for line in lines)


async def test_a_second_replica_stands_by_then_takes_the_store_over(nats_url: str, tmp_path: Path) -> None:
    store = tmp_path / "clickhouse"
    nc = await nats.connect(nats_url)
    try:
        with audit_process(nats_url, store, "audit-a", tmp_path / "a.log") as first:
            await poll_until(lambda: logged(tmp_path / "a.log", "audit ready"), "the first replica", within=60)
            with audit_process(nats_url, store, "audit-b", tmp_path / "b.log") as second:
                # the second replica has started as far as it will (ready, or standing by)
                await poll_until(
                    lambda: logged(tmp_path / "b.log", "audit ready", "standing by"), "the second replica", within=60
                )
                await publish(nc, 0, 100)
                await poll_until(lambda: stored(nc, 100), "100 rows", within=60)
                answers = [await rows(nc) for _ in range(20)]
                assert [a.error for a in answers if a.error] == [], "a query reached the replica without the store"
                assert {len(a.rows) for a in answers} == {100}

                first.send_signal(signal.SIGKILL)
                first.wait(10)
                killed = time.monotonic()
                await publish(nc, 100, 100)
                await poll_until(lambda: stored(nc, 200), "the second replica to write the rest", within=90)
                took_over = time.monotonic() - killed
                assert second.poll() is None
                assert logged(tmp_path / "b.log", "took the store over")
                answers = [await rows(nc) for _ in range(5)]
                assert [a.error for a in answers if a.error] == []
                print(f"\nAUDIT TAKEOVER: 100 events written {took_over:.2f}s after the active replica's SIGKILL")
    finally:
        await nc.close()
    await asyncio.sleep(0)
