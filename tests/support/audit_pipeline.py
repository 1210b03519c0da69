"""What the audit pipeline tests share: a sample event and reads of the store, the query subject and
the stream's durable consumer."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from libs.common.audit.audit_publisher import AuditPublisher
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent, AuditQuery, AuditRows
from services.audit import AuditService
from services.audit.writer import DURABLE

PRODUCER = "ingress-pipeline-test"
"""The chain of events published straight to the stream (on `SUBJECT`, ingress's)."""
SUBJECT = subjects.audit_subject("ingress", PRODUCER)
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
        "producer": PRODUCER,  # a publisher links it on its own chain instead
        "seq": i + 1,
    }
    return AuditEvent.model_validate(base | fields)


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


async def stored_is(service: AuditService, n: int) -> bool:
    return await stored(service) == n


async def drained(publisher: AuditPublisher) -> bool:
    """Every event the publisher took was acked or dead-lettered."""
    return publisher.pending == 0


def hold_store(chdb_url: str) -> subprocess.Popen[bytes]:
    """Another process holding the embedded store open, until its stdin closes: the audit service
    cannot open it (for it, ClickHouse is down)."""
    code = (
        "import sys, clickhouse_connect\n"
        f"client = clickhouse_connect.get_client(dsn={chdb_url!r})\n"
        "print('holding', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"holding\n", f"could not lock {chdb_url}"
    return proc
