"""Ingress composition root: builds the FastAPI app and everything it needs from one settings object.

Nothing connects at import time; `start()` connects NATS, fills the in-memory views (keys,
catalog) from KV, and serves HTTP. Several replicas can run side by side: they share nothing
but NATS and the session secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from nats.aio.client import Client as NATS

from bastion_common import subjects
from bastion_common.audit_publisher import AuditPublisher
from bastion_common.kvwatch import BucketWatch
from bastion_common.nats import connect, ensure_audit_stream, kv_bucket, processed
from bastion_common.settings import IngressSettings

from .admin import admin_api
from .catalog import Catalog
from .endpoint import McpEndpoint
from .gateway import Gateway
from .handlers import Handlers
from .hosts import HostGuard
from .keys import KeyDirectory
from .notifications import Notifier
from .session_state import SessionState
from .sessions import SessionCodec
from .streams import CallStreams

__all__ = ["IngressService"]

log = logging.getLogger(__name__)

SESSION_STATE_TTL = 7 * 24 * 3600.0
"""Seconds an agent session's log level and subscriptions are kept after their last change."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the service runner owns signals
        yield


class _McpFirst:
    """`/mcp` straight to its endpoint, everything else through FastAPI.

    The MCP endpoint answers every error itself, so FastAPI's middleware stack (error pages,
    exception handlers, routing) would only add per-request work on the hot path.
    """

    def __init__(self, endpoint: McpEndpoint, app: FastAPI) -> None:
        self.endpoint, self.app = endpoint, app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/mcp":
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class IngressService:
    def __init__(self, settings: IngressSettings) -> None:
        self.settings = settings
        self.keys = KeyDirectory()
        self.catalog = Catalog()
        self.port: int = settings.port
        self._nc: NATS | None = None
        self._watches: list[BucketWatch] = []
        self._audit: AuditPublisher | None = None
        self._server: _Server | None = None
        self._serving: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}/mcp"

    async def start(self) -> None:
        self._nc = nc = await connect(self.settings.nats_url, name=f"bastion-ingress{self.settings.instance}")
        js = nc.jetstream()
        await ensure_audit_stream(js)
        self._audit = AuditPublisher(js)
        await self._audit.start()
        self.sessions = SessionCodec(self.settings.session_secret.get_secret_value())
        self.streams = CallStreams(nc, self.sessions)
        await self.streams.start()
        state = SessionState()
        state.attach(await kv_bucket(js, subjects.KV_SESSIONS, ttl=SESSION_STATE_TTL))
        self.notifier = Notifier(self.catalog, state)
        await nc.subscribe(subjects.RESOURCE_UPDATED, cb=self.notifier.on_resource_updated)
        gateway = Gateway(nc, self.settings)
        await gateway.start()
        self.handlers = Handlers(self.catalog, self.keys, gateway, self.settings.call_timeout, self.streams, state)
        await nc.subscribe(subjects.CALL_CANCEL, cb=self.handlers.on_cancel)
        await processed(nc)
        self._watches = [
            BucketWatch(js, subjects.KV_KEYS, self.keys.put, self.keys.delete),
            BucketWatch(js, subjects.KV_CATALOG, self._catalog_put, self._catalog_delete),
            BucketWatch(js, subjects.KV_POLICY, self.handlers.policy_changed, self.handlers.policy_changed),
            BucketWatch(js, subjects.KV_SESSIONS, state.put, state.delete),
        ]
        for watch in self._watches:
            await watch.start()
        config = uvicorn.Config(
            self.build_app(nc),
            host=self.settings.host,
            port=self.settings.port,
            loop="none",
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
            timeout_keep_alive=75,
        )
        self._server = _Server(config)
        self._serving = asyncio.create_task(self._server.serve(), name="uvicorn")
        while not self._server.started:
            if self._serving.done():
                self._serving.result()  # raises the bind error
                raise RuntimeError("ingress HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        log.info("ingress listening on %s", self.url)

    def _catalog_put(self, server: str, value: bytes, revision: int = 0) -> None:
        self.catalog.put(server, value, revision)
        self.notifier.catalog_changed()

    def _catalog_delete(self, server: str) -> None:
        self.catalog.delete(server)
        self.notifier.catalog_changed()

    def build_app(self, nc: NATS) -> _McpFirst:
        assert self._audit is not None
        endpoint = McpEndpoint(
            self.handlers,
            self.keys,
            self.sessions,
            self._audit.emit,
            self.settings.max_body_bytes,
            prefer_sse=self.settings.response_mode == "sse",
            hosts=HostGuard(self.settings.host, self.settings.allowed_hosts),
            streams=self.streams,
            notifier=self.notifier,
        )
        app = FastAPI(title="Bastion ingress", version="0.1.0", docs_url="/docs", redoc_url=None)
        app.include_router(admin_api(nc.jetstream(), self.settings.admin_token, self.keys))

        @app.get("/healthz")
        async def healthz() -> JSONResponse:
            ready = nc.is_connected and all(w.ready.is_set() for w in self._watches)
            body = {"status": "ok" if ready else "starting", "tools": len(self.catalog.entries)}
            return JSONResponse(body, status_code=200 if ready else 503)

        return _McpFirst(endpoint, app)

    async def stop(self) -> None:
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._serving, 10)
        if self._audit is not None:
            await self._audit.aclose()
        for watch in self._watches:
            await watch.stop()
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()
