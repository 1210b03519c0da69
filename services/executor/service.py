"""The executor: runs the tool calls policy allowed, over one long-lived session per upstream.

Composition root. Configuration arrives through KV `bastion_servers` (a watch, so servers are
added, restarted and removed live); discovered tools go out through KV `bastion_catalog`. The hot
path is a raw nats-py queue subscription: one task per message, replies straight to the ingress
inbox the call came with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.kv import KeyValue
from pydantic import ValidationError

from bastion_common import subjects
from bastion_common.errors import ErrorKind
from bastion_common.messages import (
    CallOutcome,
    CancelExecution,
    GatewayError,
    ServerCatalog,
    ServerRecord,
    ToolCall,
    UpstreamRequest,
)
from bastion_common.nats import connect, kv_bucket, processed
from bastion_common.relay import Acknowledger
from bastion_common.settings import ExecutorSettings

from .agents import AgentLink
from .outcomes import describe_exception, refusal
from .upstream import Upstream

__all__ = ["ExecutorService"]

log = logging.getLogger(__name__)

_DELETE_OPS = ("DEL", "PURGE")
_DRAIN_TIMEOUT = 10.0


class ExecutorService:
    """Start with `await start()` (returns once every configured server has been handed its
    connection task and the call subscription is live); stop with `await stop()`."""

    def __init__(self, settings: ExecutorSettings | None = None) -> None:
        self.settings = settings or ExecutorSettings()
        self.instance = self.settings.instance or f"{socket.gethostname()}-{os.getpid()}"
        self._nc: NATS | None = None
        self._catalog: KeyValue | None = None
        self._subs: list[Subscription] = []
        self._acks: Acknowledger | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._upstreams: dict[str, Upstream] = {}
        self._publish_locks: dict[str, asyncio.Lock] = {}
        self._inflight: set[asyncio.Task[Any]] = set()
        self._running: dict[str, asyncio.Task[Any]] = {}
        """Call id -> the task running it, so an agent's cancellation can reach it."""
        self._cancelled: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()

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
        self._nc = await connect(self.settings.nats_url, name=f"bastion-executor-{self.instance}")
        js = self._nc.jetstream()
        servers = await kv_bucket(js, subjects.KV_SERVERS)
        self._catalog = await kv_bucket(js, subjects.KV_CATALOG)
        watcher = await servers.watchall()
        # apply what is already configured before taking calls, so none is refused for lack of a server
        while (entry := await watcher.updates(timeout=None)) is not None:
            await self._apply(entry)
        self._watch_task = asyncio.create_task(self._watch(watcher), name="executor:servers-watch")
        # lets policy notice this replica dying mid-call (bastion_common.relay)
        self._acks = Acknowledger(self._nc, instance=self.instance, accepted_by=subjects.EXEC_ACCEPTED_BY,
                                  alive_subject=subjects.executor_alive_subject(self.instance),
                                  after=self.settings.ack_after)
        await self._acks.start()
        await self._nc.subscribe(subjects.EXEC_CANCEL, cb=self._on_cancel)
        self._subs = [
            await self._nc.subscribe(subjects.EXEC_CALL, queue=subjects.QUEUE_EXECUTOR, cb=self._on_call),
            await self._nc.subscribe(subjects.EXEC_REQUEST, queue=subjects.QUEUE_EXECUTOR, cb=self._on_call),
        ]
        await processed(self._nc)
        log.info("executor %s: serving %s with %d server(s)", self.instance, subjects.EXEC_CALL, len(self._upstreams))

    async def stop(self) -> None:
        """Stop taking calls, let in-flight ones answer, then close every upstream session."""
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs = []
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=_DRAIN_TIMEOUT)
        if self._watch_task is not None:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)
            self._watch_task = None
        upstreams, self._upstreams = list(self._upstreams.values()), {}
        await asyncio.gather(*(u.stop() for u in upstreams), *set(self._background), return_exceptions=True)
        if self._nc is not None:
            try:
                await self._nc.drain()
            except Exception:  # NATS unreachable right now: drop the connection without flushing
                with contextlib.suppress(Exception):
                    await self._nc.close()
            self._nc = None
        log.info("executor %s: stopped", self.instance)

    # ------------------------------------------------------------------ configuration

    async def _watch(self, watcher: Any) -> None:
        try:
            async for entry in watcher:
                if entry is not None:
                    await self._apply(entry)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()

    async def _apply(self, entry: Any) -> None:
        name: str = entry.key
        try:
            if entry.operation in _DELETE_OPS or not entry.value:
                await self._remove(name)
                return
            record = ServerRecord.model_validate_json(entry.value)
        except ValidationError as exc:
            log.error("server %s: ignoring an unreadable configuration record (%d problem(s))", name, exc.error_count())
            return
        except Exception:
            log.exception("server %s: failed to apply a configuration change", name)
            return
        config = record.config
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
            self._spawn_background(current.stop())
        upstream = Upstream(
            name,
            config,
            connect_timeout=self.settings.connect_timeout,
            max_backoff=self.settings.reconnect_max_backoff,
            publish=self._publish,
            health_interval=self.settings.health_interval,
            agents=AgentLink(self._nc, name),
        )
        self._upstreams[name] = upstream
        upstream.start()

    async def _remove(self, name: str) -> None:
        upstream = self._upstreams.pop(name, None)
        if upstream is None:
            return
        log.info("server %s: removed", name)
        async with self._lock(name):  # after this no publish of the old upstream can land
            with contextlib.suppress(Exception):
                assert self._catalog is not None
                await self._catalog.delete(name)
        self._spawn_background(upstream.stop())

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
                await self._catalog.put(upstream.name, catalog.model_dump_json().encode())
            except Exception as exc:
                log.warning("server %s: cannot publish the catalog (%s)", upstream.name, describe_exception(exc))
                return False
        log.info("server %s: catalog %s (%d tools)", upstream.name, catalog.status, len(catalog.tools))
        return True

    # ------------------------------------------------------------------ hot path

    async def _on_call(self, msg: Msg) -> None:
        """nats-py awaits this per message in order: hand the call to its own task and return."""
        task = asyncio.create_task(self._handle(msg))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        if self._acks is not None:
            self._acks.watch(msg, task)  # names this replica to policy if the call is still running shortly

    async def _on_cancel(self, msg: Msg) -> None:
        """Every replica hears it; the one running the call abandons it (the SDK then sends the
        upstream `notifications/cancelled`) and answers with a `cancelled` outcome."""
        try:
            call_id = CancelExecution.model_validate_json(msg.data).id
        except ValidationError:
            return
        task = self._running.get(call_id)
        if task is not None and not task.done():
            self._cancelled.add(call_id)
            task.cancel()

    async def _handle(self, msg: Msg) -> None:
        model = ToolCall if msg.subject == subjects.EXEC_CALL else UpstreamRequest
        try:
            request = model.model_validate_json(msg.data)
        except ValidationError as exc:
            log.error("dropping a malformed %s (%d problem(s))", model.__name__, exc.error_count())
            outcome = CallOutcome(
                id="",
                error=GatewayError(kind=ErrorKind.INTERNAL,
                                   message=f"the executor received a malformed {model.__name__}"),
                decided_by="executor",
            )
        else:
            self._running[request.id] = task = asyncio.current_task()  # type: ignore[assignment]
            try:
                outcome = await self._execute(request)
            except asyncio.CancelledError:
                if request.id not in self._cancelled:
                    raise  # the executor is stopping
                task.uncancel()
                outcome = refusal(request, ErrorKind.CANCELLED, "the agent cancelled the request")
            finally:
                self._running.pop(request.id, None)
                self._cancelled.discard(request.id)
        if msg.reply and self._nc is not None:
            try:
                await self._nc.publish(msg.reply, outcome.model_dump_json().encode())
            except Exception as exc:
                log.warning("call %s: cannot send the reply (%s)", outcome.id, describe_exception(exc))

    async def _execute(self, request: ToolCall | UpstreamRequest) -> CallOutcome:
        upstream = self._upstreams.get(request.server)
        if upstream is None:
            return refusal(request, ErrorKind.UNKNOWN_TOOL, f"no server named {request.server!r} is configured")
        try:
            return await (upstream.call(request) if isinstance(request, ToolCall) else upstream.request(request))
        except Exception:
            log.exception("request %s to %s failed unexpectedly", request.id, request.server)
            return refusal(request, ErrorKind.INTERNAL, "unexpected executor failure")
