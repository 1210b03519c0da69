"""Admin service composition root: the admin API, analytics and the dashboard on their own port.

`start()` connects to NATS as the admin role (the only service that holds it: it alone may write
keys, servers, policy and LLM providers, and its principals' bucket), declares the stores it owns,
starts the audit publisher its changes are recorded with (its own hash chain), and serves HTTP.
Replicas share nothing but NATS: any replica answers any request, and every policy and ingress
replica sees a change through its KV watches.
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn
from fastapi import FastAPI
from nats.aio.client import Client as NATS

from libs.common import observability, permissions
from libs.common.audit_chain import producer_id
from libs.common.audit_journal import AuditJournal, open_slot
from libs.common.audit_publisher import AuditPublisher
from libs.common.http_serving import ServingHttp, serve_http
from libs.common.metrics import MetricsServer
from libs.common.nats import connect_service, drain_or_close
from libs.common.settings import AdminSettings
from libs.common.stores import declare_owned
from libs.common.tasks import cancel_and_wait

from .api.access_store import AccessStore
from .api.tables import Buckets
from .app import build_app

__all__ = ["AdminService"]

log = logging.getLogger(__name__)

_SWEEP_EVERY = 3600.0


class AdminService:
    def __init__(self, settings: AdminSettings) -> None:
        self.settings = settings
        self.port: int = settings.admin_port
        self._nc: NATS | None = None
        self._audit: AuditPublisher | None = None
        self._journal: AuditJournal | None = None
        self._http: ServingHttp | None = None
        self.metrics_server: MetricsServer | None = None
        self.app: FastAPI | None = None
        self._sweeping: asyncio.Task[None] | None = None
        """The HTTP app, once started (`tests/integration/test_admin_roles.py` checks every route of it)."""

    @property
    def url(self) -> str:
        """Where this replica answers (its bound address, not the public one)."""
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(
            self.settings.admin_host, self.settings.admin_host
        )
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        s = self.settings
        self.metrics_server = observability.start("admin", s)
        self._nc = nc = await connect_service(s, role=permissions.ADMIN, name=f"bastion-admin{s.instance}")
        # the configuration buckets and its own (principals): it owns them, the audit streams are audit's
        await declare_owned(nc.jetstream(), permissions.ADMIN, s)
        self._journal = open_slot(s.audit_journal_dir, s.instance or "admin")
        # admin changes are audit events on this replica's own chain
        self._audit = AuditPublisher(nc, producer=producer_id("admin"), journal=self._journal)
        await self._audit.start()
        if self._journal is not None:
            self._journal.replay(self._audit.emit)
        self.app = build_app(nc, s, self._audit.emit, lambda: self.url)
        self._sweeping = asyncio.create_task(self._sweep(AccessStore(Buckets(nc.jetstream()))), name="admin-sweep")
        config = uvicorn.Config(
            self.app,
            host=s.admin_host,
            port=s.admin_port,
            loop="none",
            lifespan="off",
            access_log=False,
            log_level="warning",
            limit_concurrency=256,
            timeout_keep_alive=30,
        )
        self._http = await serve_http(config, "admin")
        self.port = self._http.port
        log.info("admin API listening on %s/admin/v1", self.url)

    async def _sweep(self, access: AccessStore) -> None:
        """Every `_SWEEP_EVERY` seconds, forget sessions and sign-ins past their expiry (any replica may:
        each deletion is revision-checked)."""
        while True:
            await asyncio.sleep(_SWEEP_EVERY)
            try:
                if swept := await access.sweep():
                    log.info("forgot %d expired session(s) and sign-in(s)", swept)
            except Exception as exc:  # NATS away: the next round tries again
                log.warning("sweeping expired sessions failed: %s", type(exc).__name__)

    async def stop(self) -> None:
        await cancel_and_wait(self._sweeping)
        if self._http is not None:
            await self._http.stop()
        if self._audit is not None:
            await self._audit.aclose()
        if self._journal is not None:
            self._journal.close()
        if self._nc is not None:
            await drain_or_close(self._nc)
        if self.metrics_server is not None:
            self.metrics_server.close()
