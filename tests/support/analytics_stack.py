"""The services the analytics tests run against: an embedded nats-server, the audit service on an
embedded ClickHouse (chdb), and (unless asked not to) the admin service in front of it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.stack import EmbeddedNats
from libs.common.contracts.messages import AuditEvent
from libs.common.settings import AdminSettings, AuditSettings
from services.admin.service import AdminService
from services.audit import AuditService
from tests.support.admin_api import seeded_token
from tests.support.analytics_data import dataset, stored_through_the_pipeline

__all__ = ["AnalyticsStack", "analytics_stack", "stack_with_dataset"]


@dataclass
class AnalyticsStack:
    nats_url: str
    audit: AuditService
    admin: AdminService | None

    @property
    def admin_url(self) -> str:
        assert self.admin is not None, "started without the admin service"
        return self.admin.url

    async def person_token(self, name: str, role: str) -> str:
        """The API token of a person principal `name` holding `role`, made in KV directly: made through
        the admin service, it would add the admin service's own events to the rows."""
        return await seeded_token(self.nats_url, name, {"role": role}, kind="person")


@asynccontextmanager
async def analytics_stack(tmp: Path, *, admin: bool = True, **audit_settings: Any) -> AsyncIterator[AnalyticsStack]:
    """Started in `tmp`, stopped (admin first) on the way out; `audit_settings` are the audit
    service's own (`batch_size`, `analytics_queries`, …)."""
    server = EmbeddedNats(tmp / "nats").start()
    audit = AuditService(AuditSettings(nats_url=server.url, clickhouse_url=f"chdb://{tmp / 'ch'}", **audit_settings))
    # a window that outlasts the module: the 401s its tests provoke would otherwise become an
    # `auth.refused` row, in the current hour, whenever a 10 s window happened to close mid-module
    quiet = AdminSettings(nats_url=server.url, admin_port=0, auth_refusal_window=3600)
    admin_service = AdminService(quiet) if admin else None
    try:
        await audit.start()
        if admin_service is not None:
            await admin_service.start()
        yield AnalyticsStack(server.url, audit, admin_service)
    finally:
        if admin_service is not None:
            await admin_service.stop()
        await audit.stop()
        server.stop()


@asynccontextmanager
async def stack_with_dataset(
    tmp: Path, *, admin: bool = True
) -> AsyncIterator[tuple[AnalyticsStack, list[AuditEvent], float]]:
    """`analytics_stack` holding the events of `analytics_data.dataset(now)`, stored through the real
    pipeline: yields the stack, the events and that `now`."""
    now = time.time()
    events = dataset(now)
    async with analytics_stack(tmp, admin=admin, batch_size=500, flush_interval=0.05) as stack:
        await stored_through_the_pipeline(stack.nats_url, stack.audit, events)
        yield stack, events, now
