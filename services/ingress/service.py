"""Ingress composition root: builds the FastAPI app and everything it needs from one settings object.

Nothing connects at import time; `start()` connects NATS, fills the in-memory views (keys,
catalog) from KV, and serves HTTP. Several replicas can run side by side: they share nothing
but NATS and the session secret.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from libs.common.audit.audit_publisher import FieldLimits as AuditFieldLimits
from libs.common.audit.service_trail import ServiceTrail
from libs.common.bus import permissions
from libs.common.bus.kvwatch import BucketWatch
from libs.common.bus.nats import connect_service, drain_or_close, kv_bucket, processed
from libs.common.bus.starting import patient_start, start_owning
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent, Caller
from libs.common.runtime import observability
from libs.common.runtime.metrics import MetricsServer
from libs.common.runtime.package_version import bastion_version
from libs.common.runtime.probes import Probes
from libs.common.runtime.refusals import RefusalLog
from libs.common.settings import IngressSettings
from libs.common.web.favicon import FAVICON, FAVICON_TYPE
from libs.common.web.http_serving import ServingHttp, serve_http, shared_port_socket
from libs.common.web.page_security import page_headers
from services.ingress.a2a_front import A2aFront, a2a_router
from services.ingress.a2a_rest import a2a_rest_router
from services.ingress.audit_events import AuditRecorder
from services.ingress.auth.access_tokens import AccessTokens, Authenticator
from services.ingress.auth.keys import AuthFailure, KeyDirectory
from services.ingress.auth.oauth_routes import oauth_router
from services.ingress.auth.owners import Owners
from services.ingress.auth.refused_credentials import note_refusal
from services.ingress.catalog.aggregated import Catalog
from services.ingress.catalog.own_skills import load_skills
from services.ingress.catalog.user_views import UserCatalogs
from services.ingress.field_limits import FieldLimits
from services.ingress.handlers import Handlers
from services.ingress.llm.endpoint import LlmEndpoint
from services.ingress.llm.models import ModelDirectory
from services.ingress.llm.response_store import ResponseStore
from services.ingress.llm.wire import send_error
from services.ingress.mcp_edge import (
    Audit,
    Authenticate,
    BuildContext,
    CancelOnDisconnect,
    CheckHeaders,
    ChooseAnswer,
    Dispatch,
    EndSession,
    IssueSession,
    Listen,
    ListenSubscriptions,
    McpEndpoint,
    ReadBody,
    ReadMessage,
    Reply,
    ResolveEra,
    RouteMethod,
    StandaloneStream,
    TakeNotification,
    Trace,
)
from services.ingress.mcp_edge.answers import plain
from services.ingress.modes.codemode import CodeModeRouter
from services.ingress.modes.discovery import DiscoveryRouter
from services.ingress.sending.down_servers import health_body
from services.ingress.sending.request_path import RequestPath
from services.ingress.sending.routed_sender import RoutedSender
from services.ingress.sessions.notifications import Notifier
from services.ingress.sessions.session_ids import LiveSessions, SessionCodec
from services.ingress.sessions.session_state import SessionState
from services.ingress.sessions.streams import CallStreams
from services.ingress.tasks.hosted_tasks import HostedTasks
from services.ingress.tasks.task_router import TaskRouter
from services.ingress.tasks.task_store import TaskLimits, TaskStore
from services.ingress.web.hosts import HostGuard
from services.ingress.web.http_headers import REPEATED_AUTHORIZATION, repeated_headers
from services.ingress.web.http_limits import HttpLimits, guarded_protocol
from services.ingress.web.pages import landing_page
from services.ingress.web.registry_out import registry_router

__all__ = ["IngressService", "mcp_endpoint"]

log = logging.getLogger(__name__)

VERSION = bastion_version()


def mcp_endpoint(
    handlers: Handlers,
    *,
    authenticator: KeyDirectory | Authenticator,
    sessions: LiveSessions,
    path: RequestPath,
    subscriptions: ListenSubscriptions,
    streams: CallStreams | None,
    notifier: Notifier | None,
    emit_audit: Callable[[AuditEvent], object],
    hosts: HostGuard,
    fields: FieldLimits,
    max_body_bytes: int,
    prefer_sse: bool = False,
    max_listen_resources: int = 100,
    refusals: RefusalLog | None = None,
) -> McpEndpoint:
    """`/mcp`: the steps a request meets, in order, cheapest and least revealing first.

    Each answers (the status beside it) or passes the request on (`mcp_edge`)."""
    audit = Audit(emit_audit)
    standalone = StandaloneStream(notifier, sessions) if notifier is not None else None
    return McpEndpoint(
        [
            CheckHeaders(hosts),  # 403 unknown host or origin; 400 two Authorization headers
            Authenticate(authenticator, refusals),  # 401 no valid key or access token (counted, audited)
            RouteMethod(EndSession(sessions), standalone),  # DELETE ends a session, GET streams it; 405
            ReadBody(max_body_bytes),  # 413
            ChooseAnswer(prefer_sse),  # 406 neither JSON nor SSE accepted
            # 400 -32700 not JSON, -32600 not one JSON-RPC message, a field over its cap; 202 notifications
            ReadMessage(fields, TakeNotification(streams, path.cancel, sessions)),
            BuildContext(fields),  # 400 narrowing headers over their caps
            ResolveEra(sessions),  # 400 version, envelope; 404 session
            Listen(notifier, subscriptions, audit.owe, max_listen_resources),  # a 2026-07-28 listen stream
            audit,  # from here on: exactly one audit event per audited request, emitted here
            Reply(),  # sends the answer: status, Retry-After
            IssueSession(sessions.codec),  # Mcp-Session-Id for a handshake-era initialize
            CancelOnDisconnect(path.abandon),  # 2026-07-28: closing the stream cancels
            Trace(),  # the request's span
            Dispatch(handlers),  # the method's handler
        ]
    )


class _McpFirst:
    """`/mcp` and the model APIs (`/v1/...`, Gemini's `/v1beta/...`) straight to their endpoints, the rest to FastAPI.

    The MCP endpoint answers every error itself, so FastAPI's middleware stack (error pages,
    exception handlers, routing) would only add per-request work on the hot path. Ingress's own
    HTTP protocol hands `/mcp` to the endpoint itself (`guarded_protocol(direct=...)`), skipping
    this coroutine too; another server (a test's ASGI transport) comes through here. Every route but
    `/mcp` (whose pipeline checks it) refuses two `Authorization` headers here.
    """

    def __init__(self, endpoint: McpEndpoint, app: FastAPI, llm: LlmEndpoint | None = None) -> None:
        self.endpoint, self.app, self.llm = endpoint, app, llm
        self.rest: Any = self._rest
        """Every route but `/mcp` (`behind_proxies` wraps it)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/mcp":
            await self.endpoint(scope, receive, send)
            return
        await self.rest(scope, receive, send)

    def behind_proxies(self, trusted: list[str] | str) -> None:
        """Honour `X-Forwarded-For` / `-Proto` from `trusted` addresses on every route but `/mcp`.

        Uvicorn's middleware does it; `/mcp` reads neither the client's address nor the scheme."""
        self.rest = ProxyHeadersMiddleware(self._rest, trusted_hosts=trusted)

    async def _rest(self, scope: Any, receive: Any, send: Any) -> None:
        llm = scope["type"] == "http" and self.llm is not None and scope["path"].startswith(("/v1/", "/v1beta/"))
        if scope["type"] == "http" and "authorization" in repeated_headers(scope["headers"]):
            if llm:
                await send_error(send, 400, REPEATED_AUTHORIZATION, "invalid_request_error", "repeated_authorization")
            else:
                await plain(send, 400, {"error": "repeated_authorization", "message": REPEATED_AUTHORIZATION})
        elif llm:
            assert self.llm is not None
            await self.llm(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class IngressService:
    def __init__(self, settings: IngressSettings) -> None:
        self.settings = settings
        self.keys = KeyDirectory()
        self.owners = Owners()
        self.access_tokens = AccessTokens(self.owners)
        self.authenticator = Authenticator(self.keys, self.access_tokens, self.public_url)
        self.catalog = Catalog(load_skills(settings.skills_dir, settings.skill_file_max_bytes))
        self.models = ModelDirectory()
        self.port: int = settings.port
        self._nc: NATS | None = None
        self._watches: list[BucketWatch] = []
        self.trail: ServiceTrail | None = None
        """Its audit journal, publisher, and the refused credentials counted and audited per window."""
        self._http: ServingHttp | None = None
        self.metrics_server: MetricsServer | None = None
        self.probes: Probes | None = None
        self.hosted_tasks: HostedTasks | None = None
        self.responses: ResponseStore | None = None
        """`/v1/responses` conversations on the bus, for `previous_response_id` (once started)."""

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}/mcp"

    def public_url(self) -> str:
        """Scheme and authority agents reach this gateway under.

        The OAuth issuer, and `<it>/mcp` the audience of its access tokens. Never taken from a request's
        Host header."""
        return self.settings.public_url or f"http://{self.settings.host}:{self.port}"

    async def start(self) -> None:
        # tracing, and `/metrics` on a port of its own when BASTION_METRICS_PORT is set (never on the
        # public port: metrics name servers, methods and error rates, the operators' view)
        self.metrics_server = observability.start("ingress", self.settings)
        self._nc = nc = await connect_service(
            self.settings, role=permissions.INGRESS, name=f"bastion-ingress{self.settings.instance}"
        )
        self.probes = await start_owning("ingress", permissions.INGRESS, self.settings, nc)  # the sessions bucket
        js = nc.jetstream()
        self.trail = trail = await self._start_audit(nc)
        self.sessions = SessionCodec(self.settings.session_secret.get_secret_value(), self.settings.session_max_age)
        self.streams = CallStreams(nc, self.sessions)
        await self.streams.start()
        self.notifier = notifier = Notifier(self.catalog)
        sessions_kv = await patient_start("the sessions bucket", lambda: kv_bucket(js, subjects.KV_SESSIONS))
        responses_kv = await patient_start("the responses bucket", lambda: kv_bucket(js, subjects.KV_RESPONSES))
        self.responses = ResponseStore(responses_kv)
        self.state = state = SessionState(sessions_kv, on_ended=notifier.session_ended)
        await nc.subscribe(subjects.RESOURCE_UPDATED, cb=partial(notifier.on_resource_updated, state))
        # a reused policy decision holds while the keys and policy buckets stay at the revisions it saw
        keys_watch = BucketWatch(nc, subjects.KV_KEYS, self.keys.put, self.keys.delete)
        policy_watch = BucketWatch(nc, subjects.KV_POLICY, self._policy_put, self._policy_delete)
        policy_inputs = [keys_watch, policy_watch]
        self.request_path = path = RequestPath(nc, self.settings, grant_inputs=policy_inputs)
        await path.start()
        self.audits = AuditRecorder(
            content=self.settings.audit_content, limit=self.settings.audit_max_content_bytes, journal=trail.journal
        )
        self.sender = sender = RoutedSender(path, self.settings.call_timeout, self.streams, state)
        # an agent's notifications/cancelled reaches a Code Mode run too
        code_mode = CodeModeRouter(nc, self.keys, self.settings, running=sender.running, journal=trail.journal)
        await code_mode.start()
        discovery = DiscoveryRouter(self.keys, self.catalog, code_mode, notifier.tools_found)
        tasks = await self._start_tasks(nc, js, trail)
        self.handlers = Handlers(
            self.catalog, self.keys, path, sender, self.audits, state, code_mode, discovery, policy_inputs, tasks
        )
        self.handlers.user_catalogs = user_catalogs = UserCatalogs(nc, self.catalog)
        await user_catalogs.start()
        code_mode.caller_view = user_catalogs.view  # a run (and discovery's search) lists what its user is listed
        await nc.subscribe(subjects.CALL_CANCEL, cb=sender.on_cancel)
        await processed(nc)
        self._watches = [
            keys_watch,
            BucketWatch(nc, subjects.KV_CATALOG, self._catalog_put, self._catalog_delete),
            policy_watch,
            BucketWatch(nc, subjects.KV_SESSIONS, state.put, state.delete),
            BucketWatch(nc, subjects.KV_LLM, self.models.put, self.models.delete),
            BucketWatch(nc, subjects.KV_OAUTH_PUBLIC, self.access_tokens.put_keys, self.access_tokens.delete_keys),
            BucketWatch(
                nc, subjects.KV_OAUTH_REVOKED, self.access_tokens.put_revoked, self.access_tokens.delete_revoked
            ),
        ]
        for watch in self._watches:
            await watch.start()
        await self._serve(nc)
        log.info("ingress listening on %s", self.url)
        if self.probes is not None:
            self.probes.started("ingress")

    async def _start_tasks(self, nc: NATS, js: JetStreamContext, trail: ServiceTrail) -> TaskRouter:
        """MCP tasks: their records on the bus, the tasks this replica hosts (docs/tasks.md)."""
        s = self.settings
        limits = TaskLimits(
            max_per_caller=s.task_max_per_caller,
            max_ttl_ms=s.task_max_ttl_ms,
            default_ttl_ms=min(s.task_default_ttl_ms, s.task_max_ttl_ms),
            max_result_bytes=s.task_max_result_bytes,
            poll_interval_ms=s.task_poll_interval_ms,
        )
        store = TaskStore(await patient_start("the tasks bucket", lambda: kv_bucket(js, subjects.KV_TASKS)), limits)
        self.hosted_tasks = HostedTasks(nc, store, s.instance or "ingress")
        await self.hosted_tasks.start()
        return TaskRouter(store, self.hosted_tasks, trail.publisher.emit)

    async def _start_audit(self, nc: NATS) -> ServiceTrail:
        """The audit journal's slot.

        (A killed predecessor's events replayed), the publisher, and the log that counts and audits
        refused credentials."""
        s = self.settings
        return await ServiceTrail.start(
            nc,
            "ingress",
            s,
            refusals=s,
            limits=AuditFieldLimits(
                text=s.audit_max_text_bytes, error=s.audit_max_error_bytes, content=s.audit_max_content_bytes
            ),
            max_queue=s.audit_buffer,
            max_bytes=s.audit_buffer_bytes,
            linger=s.audit_linger,
        )

    async def _serve(self, nc: NATS) -> None:
        """The public HTTP front: bounded by `HttpLimits`, on uvicorn with this service's app."""
        s = self.settings
        limits = HttpLimits.of(s)
        app = self.build_app(nc)
        config = uvicorn.Config(
            app,
            host=s.host,
            port=s.port,
            loop="none",
            http=guarded_protocol(limits, direct={"/mcp": app.endpoint}),  # as `_McpFirst` routes it
            lifespan="off",
            access_log=False,
            log_level="warning",
            timeout_keep_alive=max(1, round(s.idle_timeout)),
            proxy_headers=False,  # /mcp skips the middleware: see `_McpFirst.behind_proxies`
        )
        app.behind_proxies(config.forwarded_allow_ips)
        shared = [shared_port_socket(s.host, s.port)] if s.reuse_port else None  # replicas on one port
        self._http = await serve_http(config, "ingress", shared)
        self.port = self._http.port

    def _catalog_put(self, server: str, value: bytes, revision: int = 0) -> None:
        if self.catalog.put(server, value, revision):
            self.notifier.catalog_changed()

    def _catalog_delete(self, server: str) -> None:
        self.catalog.delete(server)
        self.notifier.catalog_changed()

    def _policy_put(self, key: str, value: bytes, revision: int = 0) -> None:
        self.owners.put(key, value, revision)
        self.models.grants.put(key, value, revision)
        self.handlers.policy_changed()

    def _policy_delete(self, key: str) -> None:
        self.owners.delete(key)
        self.models.grants.delete(key)
        self.handlers.policy_changed()

    def build_app(self, nc: NATS) -> _McpFirst:
        trail = self.trail
        assert trail is not None
        fields = FieldLimits(
            method_chars=self.settings.max_method_chars,
            id_chars=self.settings.max_id_chars,
            name_chars=self.settings.max_name_chars,
            uri_chars=self.settings.max_uri_chars,
            meta_bytes=self.settings.max_meta_bytes,
            include_patterns=self.settings.max_include_patterns,
            pattern_chars=self.settings.max_pattern_chars,
        )
        endpoint = mcp_endpoint(
            self.handlers,
            authenticator=self.authenticator,
            sessions=LiveSessions(self.sessions, self.state),
            path=self.request_path,
            subscriptions=ListenSubscriptions(self.catalog, self.request_path, self.sender, self.audits),
            streams=self.streams,
            notifier=self.notifier,
            emit_audit=trail.publisher.emit,
            hosts=HostGuard(self.settings.host, self.settings.allowed_hosts, self.settings.allow_any_host),
            fields=fields,
            max_body_bytes=self.settings.max_body_bytes,
            prefer_sse=self.settings.response_mode == "sse",
            max_listen_resources=self.settings.max_listen_resources,
            refusals=trail.refusals,
        )
        # the admin API, analytics and the dashboard are the admin service's (services/admin), never here
        app = FastAPI(title="Bastion ingress", version=VERSION, docs_url=None, redoc_url=None, openapi_url=None)
        app.include_router(oauth_router(nc, self.public_url))

        @app.get("/", include_in_schema=False)
        async def landing(request: Request) -> HTMLResponse:
            page = landing_page(str(request.base_url).rstrip("/"), VERSION)
            return HTMLResponse(page, headers=page_headers())  # it has no script: none inline may run

        @app.get("/favicon.ico", include_in_schema=False)
        async def favicon() -> Response:  # the landing page's
            return Response(FAVICON, media_type=FAVICON_TYPE, headers={"Cache-Control": "max-age=86400"})

        def registry_caller(request: Request) -> Caller | AuthFailure:
            found = self.authenticator.authenticate(request.headers.get("authorization"))
            if isinstance(found, AuthFailure):  # the same credential as on /mcp: counted as its refusals are
                note_refusal(trail.refusals, "mcp", found, request.headers.get("authorization"), request.scope)
            return found

        app.include_router(registry_router(self.catalog, self.request_path, registry_caller, self.public_url))
        a2a = A2aFront(self.handlers, trail.publisher.emit)
        app.include_router(a2a_rest_router(a2a, registry_caller))
        app.include_router(a2a_router(a2a, registry_caller, self.public_url))

        @app.get("/healthz")
        async def healthz() -> JSONResponse:
            ready = nc.is_connected and all(w.ready.is_set() for w in self._watches)
            # which replica answered: replicas may share one port (`reuse_port`)
            body = {**health_body(ready, self.catalog), "replica": self.settings.instance or "ingress"}
            return JSONResponse(body, status_code=200 if ready else 503)

        llm = LlmEndpoint(
            self.handlers,
            self.keys,
            self.models,
            self.streams,
            trail.publisher.emit,
            self.settings.max_body_bytes,
            fields,
            authenticator=self.authenticator,
            refusals=trail.refusals,
            responses=self.responses,
        )
        return _McpFirst(endpoint, app, llm)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.stop()
        if self.hosted_tasks is not None:  # their runs end (cancelled) and are audited before the publisher drains
            await self.hosted_tasks.stop()
        if self.trail is not None:
            await self.trail.aclose()
        for watch in self._watches:
            await watch.stop()
        if self._nc is not None:
            await drain_or_close(self._nc)
        await observability.stop(self.metrics_server, self.probes)
