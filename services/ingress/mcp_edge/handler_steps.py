"""The steps of `/mcp` around the handler.

The audit event (`Audit`), the answer (`Reply`), a new session for a handshake-era `initialize`
(`IssueSession`), cancellation by closing the stream (`CancelOnDisconnect`), the trace (`Trace`), and the
handler itself (`Dispatch`).

From `Audit` on the request has reached its handler: whatever happens next (a failure of ours,
an answer that cannot be encoded or sent, a cancellation, the agent leaving), an audited method
ends in exactly one audit event, which `Audit` emits, after the answer went out.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from mcp.shared.inbound import ERROR_CODE_HTTP_STATUS

from libs.common.contracts.messages import AuditEvent
from libs.common.contracts.ui_apps import HOST, declares_apps
from libs.common.runtime import semconv, tracing
from services.ingress.context import RequestContext
from services.ingress.handlers import Handlers
from services.ingress.mcp_edge.chain import Exchange, Hook, Receive, Step, disconnected
from services.ingress.sessions.session_ids import SessionCodec
from services.ingress.url_elicitation import ELICITS_URLS, declares_url_elicitation
from services.ingress.web.lost_connections import watch

__all__ = ["ROUTED", "Audit", "CancelOnDisconnect", "Dispatch", "IssueSession", "Reply", "Trace", "agent_requests"]

ROUTED = frozenset({"tools/call", "prompts/get", "resources/read", "completion/complete"})
"""Requests that run upstream, so an agent may cancel them."""
_AGENT_REQUESTS = ("sampling", "elicitation", "roots")
"""Client capabilities that let an upstream ask the agent something mid-call."""


class Audit(Hook):
    """Emits the audit event the request owes (`Exchange.audit`, set by `Dispatch`).

    Once the steps after it are done, however they ended, with the size of the answer sent. The one place
    events of `/mcp` requests leave ingress (`owe` for those of a `subscriptions/listen` stream)."""

    __slots__ = ("emit",)

    def __init__(self, emit: Callable[[AuditEvent], object]) -> None:
        self.emit = emit

    def after(self, x: Exchange, failed: BaseException | None) -> None:
        if (event := x.audit) is not None:
            x.audit = None
            event.response_bytes = x.sent
            self.emit(event)

    def owe(self, events: Iterable[AuditEvent]) -> None:
        """Emit events a request owes besides its own: the upstream (un)subscribes of a stream."""
        for event in events:
            self.emit(event)


class Reply(Hook):
    """Sends the handler's answer.

    HTTP status by the era (2026-07-28 maps JSON-RPC errors to HTTP statuses, the handshake era answers
    200), `Retry-After` when the error says when to retry."""

    __slots__ = ()

    async def after(self, x: Exchange, failed: BaseException | None) -> None:
        if failed is not None:
            return  # nothing to send: the steps after it did not answer
        payload, extra = x.payload, x.extra
        status = 200
        if "error" in payload:
            error = payload["error"]
            if x.modern:
                status = ERROR_CODE_HTTP_STATUS.get(error["code"], 200)
            retry_after = (error.get("data") or {}).get("retry_after")
            if isinstance(retry_after, int | float):
                extra.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
        x.sent = await x.answer.final(payload, status, extra)


def agent_requests(params: Any) -> tuple[str, ...]:
    """What an agent declared at `initialize` that an upstream may ask of it mid-call."""
    capabilities = params.get("capabilities") if isinstance(params, dict) else None
    if not isinstance(capabilities, dict):
        return ()
    declared = tuple(name for name in _AGENT_REQUESTS if isinstance(capabilities.get(name), dict))
    declared += (ELICITS_URLS,) if declares_url_elicitation(capabilities) else ()
    return (*declared, HOST) if declares_apps(capabilities) else declared


class IssueSession(Hook):
    """A handshake-era `initialize` that succeeded gets its `Mcp-Session-Id`."""

    __slots__ = ("codec",)

    methods = frozenset({"initialize"})
    era = False

    def __init__(self, codec: SessionCodec) -> None:
        self.codec = codec

    def after(self, x: Exchange, failed: BaseException | None) -> None:
        if failed is None and "result" in x.payload:
            client = agent_requests(x.params)
            session_id = self.codec.issue(x.ctx.version, x.caller.key_id, client)
            x.extra.append((b"mcp-session-id", session_id.encode()))


class CancelOnDisconnect(Hook):
    """2026-07-28 has no `notifications/cancelled`.

    An agent that closes the stream of a request running upstream cancels it. The executor abandons the
    call (and tells the upstream); the handler still finishes, so the request keeps its audit event."""

    __slots__ = ("_abandoning", "abandon")

    methods = ROUTED
    era = True

    def __init__(self, abandon: Callable[[str], Awaitable[None]]) -> None:
        self.abandon = abandon
        self._abandoning: set[asyncio.Task[None]] = set()

    def before(self, x: Exchange) -> None:
        if (lost := watch(x.scope)) is not None:  # ingress's own server tells us: no task to watch
            ctx = x.ctx

            def gone() -> None:
                if ctx.call_id is not None:
                    task = asyncio.ensure_future(self.abandon(ctx.call_id))
                    self._abandoning.add(task)
                    task.add_done_callback(self._abandoning.discard)

            lost.add(gone)
            x.watch = (lost, gone)
            return
        # the watch holds the context, not the exchange: a cancelled task is a reference cycle
        # (its CancelledError's traceback holds its frame) that only the GC frees, with all it holds
        x.watch = asyncio.ensure_future(self._cancel_on_disconnect(x.ctx, x.receive))

    def after(self, x: Exchange, failed: BaseException | None) -> None:
        if isinstance(watching := x.watch, tuple):
            lost, gone = watching
            lost.discard(gone)
        else:
            watching.cancel()
        x.watch = None

    async def _cancel_on_disconnect(self, ctx: RequestContext, receive: Receive) -> None:
        await disconnected(receive)
        if ctx.call_id is not None:
            await self.abandon(ctx.call_id)


class Trace(Hook):
    """The request's span.

    (Named and described by the OpenTelemetry MCP conventions, `semconv`), continuing the agent's
    `traceparent`, then relayed in NATS headers and the upstream's `_meta`; and its
    `mcp.server.operation.duration`, recorded with tracing on or off."""

    __slots__ = ()

    def before(self, x: Exchange) -> None:
        if not tracing.enabled():  # what the span would be: a no-op context, no trace id
            x.span = None
            return
        ctx = x.ctx
        name, attributes = semconv.server_started(x.method, x.params, ctx.version, ctx.request_id, ctx.session)
        scope = tracing.server_span("ingress", name, x.headers, attributes)
        if (span := scope.__enter__()) is not None:
            ctx.trace_id = tracing.trace_id(span)
        x.span = (scope, span)

    def after(self, x: Exchange, failed: BaseException | None) -> None:
        scope, span = x.span or (None, None)
        x.span = None
        try:
            if hasattr(x, "payload"):  # else the handler did not answer (cancelled): no operation to measure
                ctx = x.ctx
                seconds = time.perf_counter() - ctx.started
                semconv.server_finished(span, x.method, x.params, ctx.version, x.payload, x.audit, seconds, ctx.call_id)
        finally:
            if scope is not None:
                scope.__exit__(type(failed) if failed else None, failed, failed.__traceback__ if failed else None)


class Dispatch(Step):
    """The handler of the method (`handlers.Handlers`).

    The answer, and the audit event an audited method owes, also when the request is cancelled mid-way.
    The last step."""

    __slots__ = ("handlers",)

    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers

    async def __call__(self, x: Exchange) -> None:
        try:
            x.payload, x.audit = await self.handlers.dispatch(x.ctx, x.method, x.params)
        except asyncio.CancelledError:
            x.audit = self.handlers.interrupted(x.ctx, x.method, x.params)
            raise
