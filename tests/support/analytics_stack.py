"""The services the analytics tests run against: an embedded nats-server, the audit service on an
embedded ClickHouse (chdb), and (unless asked not to) the admin service in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.stack import EmbeddedNats
from libs.common.settings import AdminSettings, AuditSettings
from services.admin.service import AdminService
from services.audit import AuditService

__all__ = ["AnalyticsStack", "analytics_stack"]


@dataclass
class AnalyticsStack:
    nats_url: str
    audit: AuditService
    admin: AdminService | None

    @property
    def admin_url(self) -> str:
        assert self.admin is not None, "started without the admin service"
        return self.admin.url


@asynccontextmanager
async def analytics_stack(tmp: Path, *, admin: bool = True, **audit_settings: Any) -> AsyncIterator[AnalyticsStack]:
    """Started in `tmp`, stopped (admin first) on the way out; `audit_settings` are the audit
    service's own (`batch_size`, `analytics_queries`, …)."""
    server = EmbeddedNats(tmp / "nats").start()
    audit = AuditService(AuditSettings(nats_url=server.url, clickhouse_url=f"chdb://{tmp / 'ch'}", **audit_settings))
    admin_service = AdminService(AdminSettings(nats_url=server.url, admin_port=0)) if admin else None
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
