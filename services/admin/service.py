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
from functools import partial

import uvicorn
from fastapi import FastAPI
from nats.aio.client import Client as NATS

from libs.common.audit.service_trail import ServiceTrail
from libs.common.bus import permissions
from libs.common.bus.nats import connect_service, drain_or_close
from libs.common.bus.starting import patient_start
from libs.common.bus.stores import declare_owned, owned_by
from libs.common.cedar import approvals
from libs.common.contracts import subjects
from libs.common.runtime import observability
from libs.common.runtime.metrics import MetricsServer
from libs.common.runtime.probes import Probes, start_probes
from libs.common.runtime.tasks import cancel_and_wait, every
from libs.common.settings import AdminSettings
from libs.common.web.http_serving import ServingHttp, serve_http

from .api.access_store import AccessStore
from .api.tables import Buckets
from .app import build_app

__all__ = ["AdminService"]

log = logging.getLogger(__name__)

_SWEEP_EVERY = 3600.0
_EXPIRE_EVERY = 2.0
"""Seconds between looks for approvals past their expiry (a bucket listing: cheap, and an expiry is
on the record within that)."""


class AdminService:
    def __init__(self, settings: AdminSettings) -> None:
        self.settings = settings
        self.port: int = settings.admin_port
        self._nc: NATS | None = None
        self.trail: ServiceTrail | None = None
        """Its audit journal, publisher, and the refused credentials counted and audited per window."""
        self._http: ServingHttp | None = None
        self.metrics_server: MetricsServer | None = None
        self.probes: Probes | None = None
        self.app: FastAPI | None = None
        self._sweeping: asyncio.Task[None] | None = None
        self._expiring: asyncio.Task[None] | None = None
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
        self.probes = await start_probes("admin", s, nc, streams=owned_by(permissions.ADMIN))
        # the configuration buckets and its own (principals): it owns them, the audit streams are audit's
        await patient_start("its streams", lambda: declare_owned(nc.jetstream(), permissions.ADMIN, s))
        # admin changes are audit events on this replica's own chain
        self.trail = trail = await ServiceTrail.start(nc, "admin", s, refusals=s)
        self.app = build_app(nc, s, trail.publisher.emit, lambda: self.url, trail.refusals)
        buckets = Buckets(nc.jetstream())  # one set of KV handles for both loops
        access = AccessStore(buckets)
        sweeping = every(_SWEEP_EVERY, partial(self._sweep, access), "sweeping expired sessions")
        self._sweeping = asyncio.create_task(sweeping, name="admin-sweep")
        expiring = every(_EXPIRE_EVERY, partial(self._expire_approvals, buckets), "expiring approvals")
        self._expiring = asyncio.create_task(expiring, name="admin-expire")
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
        if self.probes is not None:
            self.probes.started("admin")

    async def _sweep(self, access: AccessStore) -> None:
        """Forget sessions and sign-ins past their expiry (any replica may: each deletion is revision-checked)."""
        if swept := await access.sweep():
            log.info("forgot %d expired session(s) and sign-in(s)", swept)

    async def _expire_approvals(self, buckets: Buckets) -> None:
        """Mark the parked calls nobody decided in time (or approved ones the agent never came back for) expired.

        Each an admin audit event by `timeout` (docs/approvals.md). Any replica may: each record moves
        once (compare-and-set)."""
        kv = await buckets.get(subjects.KV_APPROVALS)
        for before, after in await approvals.expire_due(kv):
            assert self.trail is not None
            self.trail.publisher.emit(approvals.approval_audit_event(before, after, "timeout", "expire"))

    async def stop(self) -> None:
        await cancel_and_wait(self._expiring)
        await cancel_and_wait(self._sweeping)
        if self._http is not None:
            await self._http.stop()
        if self.trail is not None:
            await self.trail.aclose()
        if self._nc is not None:
            await drain_or_close(self._nc)
        await observability.stop(self.metrics_server, self.probes)
