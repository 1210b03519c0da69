"""Codemode composition root.

The sandbox worker pool, the catalog view, and the handler of `bastion.codemode.call` (queue group
`codemode`), built from one settings object.

Per meta-tool call: ask policy what the caller may use (`bastion.policy.list`, with the request's
include headers), take the cached view of that set, answer. A run's tool calls go back through
policy (`bastion.policy.call`) and are audited here, each with the run's event as parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from pydantic import ValidationError

from libs.common.audit.audit_publisher import FieldLimits
from libs.common.audit.service_trail import ServiceTrail
from libs.common.bus import permissions
from libs.common.bus.acknowledger import Acknowledger
from libs.common.bus.blobs import Blobs
from libs.common.bus.kvwatch import BucketWatch
from libs.common.bus.nats import connect_service, drain_or_close, processed
from libs.common.contracts import subjects
from libs.common.contracts.codemode import EXECUTE_CODE
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import CancelExecution, CodeModeAnswer, CodeModeCall, GatewayError
from libs.common.runtime import metrics, observability, tracing
from libs.common.runtime.probes import Probes, start_probes
from libs.common.settings import CodeModeSettings

from .calls import CallPath
from .gateway import PolicyGateway
from .metatools import MetaTools
from .metrics import CODEMODE_RUNS
from .sandbox import WorkerPool
from .sandbox_limits import Limits
from .searcher import Searcher
from .views import CatalogView, ViewCache

__all__ = ["CodeModeService"]

log = logging.getLogger(__name__)


class CodeModeService:
    def __init__(self, settings: CodeModeSettings) -> None:
        self.settings = settings
        self.instance = settings.instance or f"{socket.gethostname()}-{os.getpid()}"
        # new at every start even when BASTION_INSTANCE is fixed (it names the audit journal's slot,
        # which a restart must find): a restarted replica must not answer the liveness probes meant
        # for the runs its killed predecessor held, or their agents wait for the timeout
        self.alive_name = f"{self.instance}-{secrets.token_hex(4)}"
        self.limits = Limits.from_settings(settings)
        self.pool = WorkerPool(
            settings.sandbox_workers,
            self.limits,
            per_owner=settings.sandbox_runs_per_key,
            burst=settings.sandbox_burst_workers,
        )
        self.searcher = Searcher(settings)
        self.catalog = CatalogView(on_change=self.searcher.catalog_changed)
        self.views = ViewCache(self.catalog)
        self._nc: NATS | None = None
        self.trail: ServiceTrail | None = None
        self._watch: BucketWatch | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._runs: dict[str, asyncio.Task[CodeModeAnswer]] = {}
        """Meta-tool calls this replica is answering, by call id (an agent may cancel them)."""
        self.meta: MetaTools | None = None
        self.gateway: PolicyGateway | None = None
        self._acks: Acknowledger | None = None
        self._calls: Subscription | None = None
        self.metrics_server: metrics.MetricsServer | None = None
        self.probes: Probes | None = None

    async def start(self) -> None:
        self.metrics_server = observability.start("codemode", self.settings)
        await self.pool.start()
        await self.searcher.start()  # before the catalog arrives: its definitions are embedded as they come
        self._nc = nc = await connect_service(
            self.settings, role=permissions.CODEMODE, name=f"bastion-codemode-{self.instance}"
        )
        self.probes = await start_probes("codemode", self.settings, nc)
        # its own chain (replicas never serialize on one); the journal's slot is the configured instance,
        # never the host-and-pid default, so a restart finds and replays a killed predecessor's tool calls
        self.trail = trail = await ServiceTrail.start(
            nc,
            "codemode",
            self.settings,
            limits=FieldLimits(content=self.settings.audit_max_content_bytes),
        )
        self._watch = BucketWatch(nc, subjects.KV_CATALOG, self.catalog.put, self.catalog.delete)
        await self._watch.start()
        self.gateway = PolicyGateway(nc, self.settings, await Blobs.open(nc))
        await self.gateway.start()
        calls = CallPath(
            self.gateway,
            trail.publisher.emit,
            self.limits,
            self.settings.call_timeout,
            content=self.settings.audit_content,
            journal=trail.journal,
        )
        self.meta = MetaTools(self.pool, self.searcher, calls)
        self._acks = Acknowledger.of(nc, subjects.CODEMODE_HOLDERS, self.alive_name, self.settings)
        self._calls = await nc.subscribe(subjects.CODEMODE_CALL, queue=subjects.QUEUE_CODEMODE, cb=self._on_call)
        await nc.subscribe(subjects.EXEC_CANCEL, cb=self._on_cancel)
        await self._acks.start()  # after the calls: answering it also means "taking calls"
        await processed(nc)
        log.info(
            "codemode %s ready: %d sandbox workers, tool search %s",
            self.instance,
            self.pool.size,
            "hybrid" if self.searcher.embedder is not None else "lexical only",
        )
        if self.probes is not None:
            self.probes.started("codemode")

    async def stop(self) -> None:
        if self._calls is not None and self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(NatsError):
                await self._calls.unsubscribe()  # no new calls; the running ones still call tools and answer
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=self.limits.wall_seconds + 5)
        if self._watch is not None:
            await self._watch.stop()
        await self.searcher.close()
        if self.trail is not None:
            await self.trail.aclose()  # before the connection goes: the runs' audit events are in it
        if self._nc is not None:
            await drain_or_close(self._nc)
        await self.pool.close()
        await observability.stop(self.metrics_server, self.probes)

    async def _on_call(self, msg: Msg) -> None:
        # a run can take seconds: never hold up the subscription's other messages
        work = self._handle(msg)
        if tracing.enabled():  # the run's span continues ingress's; its tool calls are its children
            work = tracing.traced(work, "codemode", "codemode run", carrier=msg.headers)
        task = asyncio.create_task(work)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        if self._acks is not None:
            self._acks.watch(msg, task)

    async def _handle(self, msg: Msg) -> None:
        try:
            request = CodeModeCall.model_validate_json(msg.data)
        except ValidationError as exc:
            log.warning("codemode: malformed request: %s", exc.errors()[:1])
            return
        started = time.perf_counter()
        work = asyncio.create_task(self._answer(request))
        self._runs[request.id] = work
        try:
            await asyncio.wait({work})
        finally:
            self._runs.pop(request.id, None)
            work.cancel()  # only does something when this handler itself is being cancelled
        if work.cancelled():
            message = "the agent cancelled the call; tools the run called may have run"
            answer = CodeModeAnswer(id=request.id, error=GatewayError(kind=ErrorKind.CANCELLED, message=message))
        elif work.exception() is not None:  # a bug of ours: the agent gets an error, the log the trace
            log.error("codemode: internal error answering %s", request.tool, exc_info=work.exception())
            answer = CodeModeAnswer(
                id=request.id, error=GatewayError(kind=ErrorKind.INTERNAL, message="internal Code Mode error")
            )
        else:
            answer = work.result()
        outcome = answer.error.kind.value if answer.error else "ok"
        if request.tool == EXECUTE_CODE:
            CODEMODE_RUNS.labels(outcome).inc()
        metrics.observe("codemode", "tools/call", outcome, time.perf_counter() - started)
        if msg.reply:
            try:
                await msg.respond(answer.model_dump_json().encode())
            except NatsError as exc:  # connection gone: ingress's liveness probes tell the agent
                log.warning("codemode: could not answer %s: %r", request.tool, exc)

    async def _on_cancel(self, msg: Msg) -> None:
        """`EXEC_CANCEL` (to every executor and codemode replica): stop the run if it is ours."""
        cancel = CancelExecution.parsed(msg.data)
        work = self._runs.get(cancel.id) if cancel is not None else None
        if work is not None:
            work.cancel()

    async def _answer(self, request: CodeModeCall) -> CodeModeAnswer:
        assert self.gateway is not None and self.meta is not None
        catalog = self.catalog
        revision, listed, definitions = catalog.revision, catalog.listed, catalog.definitions
        own = None
        if request.per_user is not None:  # some servers are per user: the caller's own tools of them
            listed, definitions, own = catalog.merged(request.per_user, request.own_tools)
        allowed = await self.gateway.visible(request.caller, listed, request.include_servers, request.include_tools)
        if isinstance(allowed, GatewayError):
            return CodeModeAnswer(id=request.id, error=allowed)
        view = self.views.view(revision, allowed, listed.pairs, definitions, own)
        answer = await self.meta.answer(request, view)
        return CodeModeAnswer(
            id=request.id, result=answer.result, calls=answer.calls, authorize_urls=answer.authorize_urls
        )
