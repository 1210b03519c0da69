"""Read audit rows back the way an analyst does (`bastion.audit.query` to the audit service, which
reads ClickHouse), waiting for the batch that holds them."""

from __future__ import annotations

from collections.abc import Callable

from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent, AuditQuery, AuditRows
from tests.support.polling import poll_until

__all__ = ["audit_rows", "audit_rows_when", "kind_rows_when"]


async def _rows_when(
    nats_url: str, query: AuditQuery, done: Callable[[list[AuditEvent]], object], what: str, every: float
) -> list[AuditEvent]:
    """The rows `query` finds once `done(rows)` holds, asked again every `every` seconds."""
    nc = await connect(nats_url, "test-audit-query")
    asked = query.model_dump_json().encode()

    async def rows() -> list[AuditEvent] | None:
        found = AuditRows.model_validate_json((await nc.request(subjects.AUDIT_QUERY, asked, timeout=10)).data).rows
        return found if done(found) else None

    try:
        return await poll_until(rows, what, every=every)
    finally:
        await nc.close()


async def audit_rows(nats_url: str, key_name: str, at_least: int) -> list[AuditEvent]:
    """The audit rows of `key_name` (a key's name, or `user:<id>`), once there are `at_least` of them
    (audit writes in batches)."""
    query, what = AuditQuery(limit=100, key_name=key_name), f"{at_least} audit rows of {key_name}"
    return await _rows_when(nats_url, query, lambda found: len(found) >= at_least, what, every=0.1)


async def audit_rows_when(
    nats_url: str, key_name: str, done: Callable[[list[AuditEvent]], object], limit: int = 20
) -> list[AuditEvent]:
    """The newest `limit` audit rows of `key_name` once `done(rows)` holds: for rows that come from
    several producers, or a run's row with its inner calls'."""
    query = AuditQuery(key_name=key_name, limit=limit)
    return await _rows_when(nats_url, query, done, f"the audit rows of {key_name}", every=0.2)


async def kind_rows_when(nats_url: str, kind: str, done: Callable[[list[AuditEvent]], object]) -> list[AuditEvent]:
    """The newest 1000 audit rows of `kind` (`auth.refused`, ...) once `done(rows)` holds."""
    return await _rows_when(nats_url, AuditQuery(limit=1000, kind=kind), done, f"the {kind} audit rows", every=0.2)
