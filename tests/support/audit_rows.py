"""Read audit rows back the way an analyst does (`bastion.audit.query` to the audit service, which
reads ClickHouse), waiting for the batch that holds them."""

from __future__ import annotations

from collections.abc import Callable

from libs.common import subjects
from libs.common.messages import AuditEvent, AuditQuery, AuditRows
from libs.common.nats import connect
from tests.support.polling import poll_until

__all__ = ["audit_rows", "audit_rows_when"]


async def audit_rows(nats_url: str, key_name: str, at_least: int) -> list[AuditEvent]:
    """The audit rows of `key_name` (a key's name, or `user:<id>`), once there are `at_least` of them
    (audit writes in batches)."""
    nc = await connect(nats_url, "test-audit-query")
    query = AuditQuery(limit=100, key_name=key_name).model_dump_json().encode()

    async def rows() -> list[AuditEvent] | None:
        found = AuditRows.model_validate_json((await nc.request(subjects.AUDIT_QUERY, query, timeout=10)).data).rows
        return found if len(found) >= at_least else None

    try:
        return await poll_until(rows, f"{at_least} audit rows of {key_name}", every=0.1)
    finally:
        await nc.close()


async def audit_rows_when(nats_url: str, key_name: str, done: Callable[[list[AuditEvent]], object]) -> list[AuditEvent]:
    """The audit rows of `key_name` (the query's default limit) once `done(rows)` holds: for rows
    that come from several producers, or a run's row with its inner calls'."""
    nc = await connect(nats_url, "test-audit")
    query = AuditQuery(key_name=key_name).model_dump_json().encode()

    async def rows() -> list[AuditEvent] | None:
        found = AuditRows.model_validate_json((await nc.request(subjects.AUDIT_QUERY, query, timeout=10)).data).rows
        return found if done(found) else None

    try:
        return await poll_until(rows, f"the audit rows of {key_name}", every=0.2)
    finally:
        await nc.close()
