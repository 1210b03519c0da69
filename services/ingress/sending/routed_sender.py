"""Sending the requests ingress routes to one upstream through policy and an executor.

A `tools/call` (`ToolCall`), and `prompts/get`, `resources/read`, `resources/(un)subscribe`,
`completion/complete` (`UpstreamRequest`), with what every such send shares: the timeout, a call stream
to the agent when it can take one, and the bookkeeping an agent's cancellation needs.

The handlers hold one `RoutedSender` (`handlers.Handlers`); so does a `subscriptions/listen`
stream for the upstream subscriptions it holds.
"""

from __future__ import annotations

from typing import Any

from libs.common.contracts.messages import CallOutcome, CancelCall, Routed, UpstreamRequest
from services.ingress.catalog.aggregated import CatalogEntry
from services.ingress.context import RequestContext
from services.ingress.protocol import ENVELOPE_META_KEYS
from services.ingress.sending.request_path import RequestPath
from services.ingress.sessions.session_state import SessionState
from services.ingress.sessions.streams import CallStreams

__all__ = ["RoutedSender", "call_extra", "forwarded_meta"]


class RoutedSender:
    def __init__(
        self,
        path: RequestPath,
        call_timeout: float,
        streams: CallStreams | None = None,
        state: SessionState | None = None,
    ) -> None:
        self.path = path
        self.call_timeout = call_timeout
        """The most any routed request may take (`BASTION_CALL_TIMEOUT`); an agent may ask for less."""
        self.streams = streams
        self.state = state or SessionState()
        """Where a session's log level is kept (it filters the log notifications of its calls)."""
        self.running: dict[tuple[str, str, Any], str] = {}
        """(key id, session, JSON-RPC id) -> id of the call this replica is running for it, so an
        agent's `notifications/cancelled` finds it. Only session requests: without a session, two
        agents sharing a key may use the same JSON-RPC id."""

    def timeout(self, ctx: RequestContext) -> float:
        return min(ctx.timeout, self.call_timeout) if ctx.timeout else self.call_timeout

    async def request(
        self,
        ctx: RequestContext,
        method: str,
        entry: CatalogEntry,
        params: dict[str, Any],
        target: str | None = None,
    ) -> CallOutcome:
        """`method` with `params` to the upstream of `entry`, for the grant `target` (the entry's own by default)."""
        meta = forwarded_meta(params)
        forwarded = {k: v for k, v in params.items() if k != "_meta"}
        if meta:
            forwarded["_meta"] = meta
        request = UpstreamRequest(
            trace_id=ctx.trace_id,
            caller=ctx.caller,
            server=entry.server,
            method=method,
            params=forwarded,
            target=target or entry.target,
            subscriber=ctx.session,
            include_servers=list(ctx.include_servers) if ctx.include_servers is not None else None,
            timeout=self.timeout(ctx),
            client=list(ctx.client),
            version=ctx.version,
        )
        return await self.call(ctx, request)

    async def call(self, ctx: RequestContext, message: Routed) -> CallOutcome:
        """Send `message` (a `ToolCall`, or `request`'s), with a call stream open when the agent can take one (SSE)."""
        ctx.call_id = message.id
        running = (ctx.caller.key_id, ctx.session, ctx.request_id) if ctx.session is not None else None
        if running is not None:
            self.running[running] = message.id
        try:
            if ctx.emit is None or self.streams is None:
                return await self.path.routed(message)
            levels = self.state.levels  # most sessions set no level: asked without a dict.get call
            level = levels[ctx.session] if ctx.session and ctx.session in levels else None
            stream = self.streams.open(ctx.caller.key_id, ctx.emit, level)
            message.stream = stream.subject
            if level is not None:  # None is the message's own default
                message.log_level = level
            return await self.streams.relay(stream, self.path.routed(message))
        finally:
            if running is not None:
                self.running.pop(running, None)

    async def on_cancel(self, msg: Any) -> None:
        """`CALL_CANCEL` from any replica: abandon the call if this replica runs it."""
        cancel = CancelCall.parsed(msg.data)
        if cancel is None:
            return
        call_id = self.running.get((cancel.key_id, cancel.session, cancel.request_id))
        if call_id is not None:
            await self.path.abandon(call_id)


def forwarded_meta(params: dict[str, Any]) -> dict[str, Any] | None:
    """The request's `_meta` minus the 2026-07-28 envelope (which describes the agent's hop only)."""
    # asked without a call where there is no `_meta` (JSON values are of their exact types)
    if "_meta" not in params or type(meta := params["_meta"]) is not dict or meta.keys() <= ENVELOPE_META_KEYS:
        return None
    return {k: v for k, v in meta.items() if k not in ENVELOPE_META_KEYS} or None


_CALL_FIELDS = frozenset(("name", "arguments", "_meta"))


def call_extra(params: dict[str, Any]) -> dict[str, Any] | None:
    """The `params` of a `tools/call` besides name, arguments and `_meta`.

    (2026-07-28 `inputResponses`, `requestState`), forwarded as they are; None when there are none."""
    if params.keys() <= _CALL_FIELDS:
        return None
    return {k: v for k, v in params.items() if k not in _CALL_FIELDS} or None
