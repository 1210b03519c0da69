"""The executor: runs the tool calls policy allowed, over one long-lived session per upstream.

Composition root. Configuration arrives through KV `bastion_servers` (a watch, so servers are
added, restarted and removed live); discovered tools go out through KV `bastion_catalog`. The hot
path is a raw nats-py queue subscription: one task per message, each answered on the requester's
inbox that policy named when it forwarded the call (`subjects.REPLY_TO`): the outcome goes straight
back to ingress (or codemode). A call that did not run and that policy charged is refunded with a
`Refund` to policy, off the reply path. Chat completions are still relayed by policy and answered
on the message's own reply subject.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.kv import KeyValue
from pydantic import ValidationError

from libs.common.bus import permissions
from libs.common.bus.acknowledger import Acknowledger, reply_subject
from libs.common.bus.blobs import Blobs, fits
from libs.common.bus.in_place import immediate
from libs.common.bus.kvwatch import BucketWatch
from libs.common.bus.nats import connect_service, drain_or_close, kv_bucket, processed
from libs.common.bus.starting import patient_start, start_owning
from libs.common.bus.work_signing import WorkSigner
from libs.common.contracts import subjects
from libs.common.contracts.carried import carried
from libs.common.contracts.config import ServerConfig
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.llm import LlmOutcome, LlmRequest
from libs.common.contracts.messages import (
    CallOutcome,
    CancelExecution,
    GatewayError,
    Refund,
    Routed,
    ServerCatalog,
    ServerRecord,
    ToolCall,
    UpstreamRequest,
    encode_outcome,
)
from libs.common.runtime import metrics, observability, tracing
from libs.common.runtime.probes import Probes
from libs.common.runtime.sealing import Sealer, SealingError
from libs.common.settings import ExecutorSettings
from libs.common.web.egress_rules import EgressRules

from .admission import Admission, Stale, stale_answer
from .agents import AgentLink
from .call_path import Call, CallPath, call_path
from .catalog_store import write_entry
from .error_mapping import describe_exception
from .gauges import executor_gauges
from .interceptors import Interceptor, InterceptorChain, configured
from .large_results import oversized
from .llm_providers import LlmProviders
from .llm_routing import LlmRouter
from .oauth_tokens import OAuthTokens, oauth_applies, token_fetcher
from .replies import for_the_wire, outcome_label, refunded, reply_headers
from .upstream import Publish, Upstream
from .upstreams.interface import UpstreamSettings
from .upstreams.mcp.stdio_sandbox import StdioRoot
from .user_listings import UserListings
from .user_sessions import UserSessions

__all__ = ["ExecutorService"]

log = logging.getLogger(__name__)

_DRAIN_TIMEOUT = 10.0


class ExecutorService:
    """Start with `await start()`.

    (Returns once every configured server has been handed its connection task and the call subscription
    is live); stop with `await stop()`."""

    def __init__(
        self, settings: ExecutorSettings | None = None, interceptors: Sequence[Interceptor] | None = None
    ) -> None:
        self.settings = settings or ExecutorSettings()
        self.interceptors = InterceptorChain(configured(self.settings) if interceptors is None else interceptors)
        """Checks every request to an upstream, and every listing, passes (`interceptors`); by default
        those the settings turn on."""
        self.instance = self.settings.instance or f"{socket.gethostname()}-{os.getpid()}"
        self.publisher = f"{self.instance}-{secrets.token_hex(4)}"
        """Names this process in the catalog entries it writes: unique even when instance names are
        reused (a restarted replica, replicas sharing a BASTION_INSTANCE)."""
        self._served_elsewhere: dict[str, str] = {}
        """Server -> the replica whose "ready" this one last left in place (logged once per change)."""
        self._signer = WorkSigner(self.settings.bus_signing_key)
        self._admission = Admission(self._signer, self._servers_revision)
        """Work runs only when policy signed it, or granted it: the bus alone cannot prove who sent it."""
        self._sealer = Sealer(self.settings.secrets_key)
        """The only place upstream secrets are opened (they are sealed in KV: `libs.common.runtime.sealing`)."""
        self.stdio_root = StdioRoot.of(self.settings.stdio_root, self.settings.data_dir)
        """Each stdio server's sandbox has its working folder here (`upstreams.mcp.stdio_sandbox`)."""
        self._upstream_settings = UpstreamSettings.of(self.settings, self.stdio_root)
        """What every upstream is kept and called with."""
        self._nc: NATS | None = None
        self._catalog: KeyValue | None = None
        self._subs: list[Subscription] = []
        self._acks: Acknowledger | None = None
        self._servers_watch: BucketWatch | None = None
        self._upstreams: dict[str, Upstream] = {}
        self._publish_locks: dict[str, asyncio.Lock] = {}
        self._inflight: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop it was started on, where each call's task is made: held, not looked up per call (a
        `getpid` each on CPython 3.11)."""
        self._background: set[asyncio.Task[Any]] = set()
        self._blobs: Blobs | None = None
        self._llm: LlmProviders | None = None
        self._llm_router: LlmRouter | None = None
        self._llm_watch: BucketWatch | None = None
        self._users = UserSessions(self._user_session, self.settings.max_user_sessions)
        """Per-user sessions of `per_user` servers: each user's calls over their own session and token."""
        self._listings = UserListings(self._upstreams, self._users, self.settings.connect_timeout)
        self.calls: CallPath
        self.metrics_server: metrics.MetricsServer | None = None
        self.probes: Probes | None = None
        self._state = metrics.StateCollector(self._gauges)

    @property
    def upstreams(self) -> Mapping[str, Upstream]:
        """Read-only view of the servers this executor currently runs, by name."""
        return MappingProxyType(self._upstreams)

    async def __aenter__(self) -> ExecutorService:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.metrics_server = observability.start("executor", self.settings)
        self._nc = await connect_service(
            self.settings, role=permissions.EXECUTOR, name=f"bastion-executor-{self.instance}"
        )
        # the catalog and the payload store
        self.probes = await start_owning("executor", permissions.EXECUTOR, self.settings, self._nc)
        js = self._nc.jetstream()
        self._catalog = await patient_start("the catalog bucket", lambda: kv_bucket(js, subjects.KV_CATALOG))
        self._blobs = await Blobs.open(self._nc)
        self.interceptors.on_relist = self._relist
        await self.interceptors.start(self._nc)  # before the first listing or call reaches them
        # apply what is already configured before taking calls, so none is refused for lack of a server
        self._servers_watch = BucketWatch(self._nc, subjects.KV_SERVERS, self._put_server, self._remove_server)
        await self._servers_watch.start()
        # providers are reached under the upstreams' egress rules: their `base_url` is whoever set it's choice
        self._llm = LlmProviders(self._sealer, self._nc.publish, EgressRules(self.settings.egress.allow_private_hosts))
        self._llm_router = router = LlmRouter(self._llm)
        self._llm_watch = BucketWatch(self._nc, subjects.KV_LLM, router.put, router.delete)
        await self._llm_watch.start()
        # lets policy notice this replica dying mid-call (libs.common.bus.relay)
        self._acks = Acknowledger(
            self._nc,
            subjects.EXEC_HOLDERS,
            instance=self.instance,
            after=self.settings.ack_after,
            margin=self.settings.ack_margin,
        )
        await self._acks.start()
        self.calls = call_path(
            self._upstreams,
            interceptors=self.interceptors,
            users=self._users,
            blobs=self._blobs,
            max_arguments=self.settings.max_result_bytes,
            acks=self._acks,
        )
        """Every routed request policy allowed goes through these steps (`call_path`)."""
        await self._nc.subscribe(subjects.EXEC_CANCEL, cb=self._on_cancel)
        await self._listings.start(self._nc)  # each user's catalog of a per-user server
        on_call = immediate(self._on_call)  # taken as it is parsed, or in a co-located sender's publish
        self._subs = [
            await self._nc.subscribe(subjects.EXEC_CALL, queue=subjects.QUEUE_EXECUTOR, cb=on_call),
            await self._nc.subscribe(subjects.EXEC_REQUEST, queue=subjects.QUEUE_EXECUTOR, cb=on_call),
            await self._nc.subscribe(subjects.EXEC_LLM, queue=subjects.QUEUE_EXECUTOR, cb=on_call),
        ]
        await processed(self._nc)
        log.info("executor %s: serving %s with %d server(s)", self.instance, subjects.EXEC_CALL, len(self._upstreams))
        self._state.register()  # upstream health, breaker state and NATS lag, read when scraped
        if self.probes is not None:
            self.probes.started("executor")

    async def stop(self) -> None:
        """Stop taking calls, let in-flight ones answer, then close every upstream session."""
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs = []
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=_DRAIN_TIMEOUT)
        if self._servers_watch is not None:
            await self._servers_watch.stop()
            self._servers_watch = None
        if self._llm_watch is not None:
            await self._llm_watch.stop()
            self._llm_watch = None
        if self._llm is not None:
            await self._llm.close()
        await self._users.stop()
        upstreams, self._upstreams = list(self._upstreams.values()), {}
        await asyncio.gather(*(u.stop() for u in upstreams), *set(self._background), return_exceptions=True)
        await self.interceptors.stop()
        if self._nc is not None:
            await drain_or_close(self._nc)
            self._nc = None
        self._state.unregister()
        if not self.settings.stdio_root:  # a temporary root of its own
            shutil.rmtree(self.stdio_root.folder, ignore_errors=True)
        await observability.stop(self.metrics_server, self.probes)
        log.info("executor %s: stopped", self.instance)

    def _gauges(self) -> Iterator[metrics.Sample]:
        return executor_gauges(self._upstreams, self._nc)

    # ------------------------------------------------------------------ configuration

    async def _remove_server(self, name: str) -> None:
        try:
            await self._remove(name)
        except Exception:
            log.exception("server %s: failed to apply a configuration change", name)

    async def _put_server(self, name: str, value: bytes, _revision: int = 0) -> None:
        try:
            record = ServerRecord.model_validate_json(value)
        except ValidationError as exc:
            log.error("server %s: ignoring an unreadable configuration record (%d problem(s))", name, exc.error_count())
            return
        except Exception:
            log.exception("server %s: failed to apply a configuration change", name)
            return
        try:
            config = self._sealer.open(record.config)
        except SealingError as exc:
            log.error("server %s: cannot open its sealed secrets (%s); not running it", name, exc)
            await self._remove(name)
            await self._unavailable(name, f"cannot open its sealed secrets: {exc}")
            return
        current = self._upstreams.get(name)
        if config.disabled:
            log.info("server %s: disabled", name)
            await self._remove(name)
            return
        if current is not None and current.config == config:
            return
        if current is not None and current.reconfigurable(config):
            log.info("server %s: exposure or timeout changed; keeping the session", name)
            await current.reconfigure(config)
            return
        if current is not None:
            log.info("server %s: configuration changed; restarting", name)
            self._users.close_server(name)
            self._spawn_background(current.stop())
        upstream = self._new_upstream(name, config, self._publish, None)
        self._upstreams[name] = upstream
        upstream.start()

    def _new_upstream(self, name: str, config: ServerConfig, publish: Publish, user: str | None) -> Upstream:
        """A session to `name`; with `user`, one that carries that user's own OAuth token (a per-user server)."""
        assert self._nc is not None
        oauth = OAuthTokens(token_fetcher(self._nc, name, config, user)) if oauth_applies(config) else None
        return Upstream(
            name,
            config,
            self._upstream_settings,
            publish=publish,
            agents=AgentLink(self._nc, name, self.interceptors.outgoing),
            oauth=oauth,
            interceptors=self.interceptors,
            user=user,
        )

    async def use_interceptors(self, interceptors: Sequence[Interceptor]) -> None:
        """Run `interceptors` from now on (a configuration change).

        Every server is listed again so what they hide or annotate holds for its catalog too."""
        await self.interceptors.replace(interceptors)
        for upstream in list(self._upstreams.values()):
            upstream.relist()
        self._users.relist()

    def _relist(self, name: str) -> None:
        """An interceptor's verdict on `name`'s definitions changed (an approval): list it again."""
        upstream = self._upstreams.get(name)
        if upstream is not None:
            upstream.relist()
            self._users.relist(name)

    def _user_session(self, name: str, config: ServerConfig, user: str) -> Upstream:
        return self._new_upstream(name, config, self._users.publisher(name, user), user)

    async def _remove(self, name: str) -> None:
        upstream = self._upstreams.pop(name, None)
        if upstream is None:
            return
        log.info("server %s: removed", name)
        self._users.close_server(name)
        async with self._lock(name):  # after this no publish of the old upstream can land
            with contextlib.suppress(Exception):
                assert self._catalog is not None
                await self._catalog.delete(name)
        self._spawn_background(upstream.stop())

    async def _unavailable(self, name: str, reason: str) -> None:
        """Tell admins (catalog, `bastion servers list`) why a configured server is not running."""
        entry = ServerCatalog(server=name, status="unavailable", health="down", error=reason)
        async with self._lock(name):
            try:
                await self._write(entry)
            except Exception as exc:
                log.warning("server %s: cannot publish the catalog (%s)", name, describe_exception(exc))

    def _spawn_background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _lock(self, name: str) -> asyncio.Lock:
        return self._publish_locks.setdefault(name, asyncio.Lock())

    async def _publish(self, upstream: Upstream, catalog: ServerCatalog) -> bool:
        """Write a catalog entry, unless `upstream` has been replaced or removed meanwhile."""
        async with self._lock(upstream.name):
            if self._upstreams.get(upstream.name) is not upstream or self._catalog is None:
                return False
            try:
                if not await self._write(catalog):
                    return False
            except Exception as exc:
                log.warning("server %s: cannot publish the catalog (%s)", upstream.name, describe_exception(exc))
                return False
        log.info("server %s: catalog %s (%d tools)", upstream.name, catalog.status, len(catalog.tools))
        return True

    async def _write(self, entry: ServerCatalog) -> bool:
        """Write `entry` as this replica's; False when another replica's fresh "ready" was kept."""
        assert self._catalog is not None
        entry.publisher = self.publisher
        serving = await write_entry(self._catalog, entry, 3 * self.settings.catalog_heartbeat)
        if serving is None:
            self._served_elsewhere.pop(entry.server, None)
            return True
        if self._served_elsewhere.get(entry.server) != serving:
            self._served_elsewhere[entry.server] = serving
            log.info("server %s: unavailable here (%s), served by %s", entry.server, entry.error, serving)
        return False

    # ------------------------------------------------------------------ hot path

    def _on_call(self, msg: Msg) -> None:
        """Hand the call to its own task and return, never waiting (`in_place.immediate`)."""
        reply = reply_subject(msg)
        verdict = self._admission.admit(msg.subject, reply, msg.headers, msg.data, time.time())
        if isinstance(verdict, str):
            # not from policy, nor granted by it (e.g. JetStream made to deliver it here): no answer, no ack
            log.warning("executor %s: refusing %s %s", self.instance, msg.subject, verdict)
            return
        if isinstance(verdict, Stale):
            if reply and self._nc is not None:
                self._spawn_background(self._answer_stale(reply, verdict.call_id))
            return
        work = self._handle(msg, reply, verdict.request)
        if tracing.enabled():  # the call's span continues policy's, from the request's headers
            work = tracing.traced(work, "executor", f"executor {msg.subject}", carrier=msg.headers)
        assert self._loop is not None  # calls arrive on the subscription `start` made
        task = self._loop.create_task(work)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        if self._acks is not None:
            self._acks.watch(msg, task, reply)  # names this replica to the requester if the call runs a while

    async def _answer_stale(self, reply: str, call_id: str) -> None:
        """Tell the requester its call arrived too late to run (it is not run)."""
        assert self._nc is not None
        data, headers = stale_answer(call_id)
        try:
            await self._nc.publish(reply, data, headers=headers)
        except Exception as exc:
            log.warning("call %s: cannot say it arrived too late (%s)", call_id, describe_exception(exc))

    async def _on_cancel(self, msg: Msg) -> None:
        """Every replica hears it.

        The one running the call abandons it (the SDK then sends the upstream `notifications/cancelled`)
        and answers with a `cancelled` outcome."""
        cancel = CancelExecution.parsed(msg.data)
        if cancel is not None:
            self.calls.running.cancel(cancel.id)

    def _servers_revision(self) -> int:
        return self._servers_watch.revision if self._servers_watch is not None else 0

    async def _handle(self, msg: Msg, reply: str | None, parsed: Routed | None = None) -> None:
        if msg.subject == subjects.EXEC_LLM:
            await self._handle_llm(msg)
            return
        model: type[ToolCall | UpstreamRequest] = ToolCall if msg.subject == subjects.EXEC_CALL else UpstreamRequest
        version: str | None = None
        try:
            request = parsed or carried(model, msg.data)
        except ValidationError as exc:
            log.error("dropping a malformed %s (%d problem(s))", model.__name__, exc.error_count())
            outcome = CallOutcome(
                id="",
                error=GatewayError(
                    kind=ErrorKind.INTERNAL, message=f"the executor received a malformed {model.__name__}"
                ),
                decided_by="executor",
                execution="not_run",
            )
        else:
            version = request.version
            started = time.perf_counter()
            outcome = await self.calls.run(Call(request, msg))
            metrics.observe("executor", request.rpc_method, outcome_label(outcome), time.perf_counter() - started)
        if reply and self._nc is not None:
            try:
                outcome = for_the_wire(outcome, version)
                data = encode_outcome(outcome)
                if not fits(self._nc, len(data)):
                    data = encode_outcome(
                        await oversized(outcome, len(data), self.settings.max_result_bytes, self._blobs)
                    )
                await self._nc.publish(reply, data, headers=reply_headers(msg.headers, outcome))
            except Exception as exc:
                log.warning("call %s: cannot send the reply (%s)", outcome.id, describe_exception(exc))
        if msg.headers and subjects.CHARGED in msg.headers and refunded(outcome):  # uncharged: nothing to refund
            await self._refund(outcome.id)

    async def _refund(self, call_id: str) -> None:
        """The call did not run (or may not have): the policy replica that charged it gives it back."""
        assert self._nc is not None
        try:
            await self._nc.publish(subjects.POLICY_REFUND, Refund(id=call_id).model_dump_json().encode())
        except Exception as exc:  # the charge stays: err on the side of the budget
            log.warning("call %s: cannot ask for its refund (%s)", call_id, describe_exception(exc))

    async def _handle_llm(self, msg: Msg) -> None:
        """A chat completion (`LlmRequest`): chunks go to its stream as they come, the outcome last."""
        assert self._acks is not None and self._llm_router is not None and self._nc is not None
        try:
            request = LlmRequest.model_validate_json(msg.data)
        except ValidationError as exc:
            log.error("dropping a malformed LlmRequest (%d problem(s))", exc.error_count())
            error = GatewayError(kind=ErrorKind.INTERNAL, message="the executor received a malformed LlmRequest")
            outcome = LlmOutcome(id="", error=error)
        else:
            if not self._acks.admit(msg) or time.time() >= request.deadline:
                log.warning("llm request %s arrived after policy stopped waiting; not run", request.id)
                error = GatewayError(kind=ErrorKind.GATEWAY_TIMEOUT, message="the request arrived too late to run")
                outcome = LlmOutcome(id=request.id, error=error)
            else:
                try:
                    outcome = await self._llm_router.run(request)
                except Exception:
                    log.exception("llm request %s failed unexpectedly", request.id)
                    error = GatewayError(kind=ErrorKind.INTERNAL, message="unexpected executor failure")
                    outcome = LlmOutcome(id=request.id, error=error)
        if msg.reply:
            try:
                await self._nc.publish(msg.reply, outcome.model_dump_json().encode())
            except Exception as exc:
                log.warning("llm request %s: cannot send the reply (%s)", outcome.id, describe_exception(exc))
