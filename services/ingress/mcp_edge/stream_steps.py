"""Streams of server-initiated messages on `/mcp`.

A session's `GET /mcp` (`StandaloneStream`), and a 2026-07-28 `subscriptions/listen` request, whose
answer is such a stream (`Listen`), with the upstream resource subscriptions it holds while open
(`ListenSubscriptions`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY
from mcp_types import INVALID_PARAMS

from libs.common.contracts.messages import AuditEvent, PairList, new_id
from services.ingress.audit_events import AuditRecorder, Ending
from services.ingress.catalog.aggregated import Catalog, CatalogEntry
from services.ingress.context import RequestContext
from services.ingress.mcp_edge.answers import SSE_HEADERS, plain, respond
from services.ingress.mcp_edge.chain import Answering, Check, Exchange, Refusal, Send, disconnected
from services.ingress.mcp_edge.era_steps import named_session
from services.ingress.protocol import error_body
from services.ingress.sending.request_path import RequestPath
from services.ingress.sending.routed_sender import RoutedSender
from services.ingress.sessions.notifications import Listener, Notifier
from services.ingress.sessions.session_ids import LiveSessions
from services.ingress.sessions.streams import sse_event

__all__ = ["Listen", "ListenSubscriptions", "StandaloneStream", "listen_problem", "serve_listener"]

_KEEPALIVE = 15.0
"""Seconds between SSE comments on an idle stream, so proxies do not cut it."""


async def serve_listener(
    notifier: Notifier, listener: Listener, opening: list[bytes], receive: Any, send: Send
) -> None:
    """Stream what `listener` collects until the agent goes away; keep idle streams alive."""
    gone = asyncio.ensure_future(disconnected(receive))
    try:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        for chunk in opening:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        while not gone.done():
            getter = asyncio.ensure_future(listener.queue.get())
            done, _ = await asyncio.wait({getter, gone}, timeout=_KEEPALIVE, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                if (message := getter.result()) is None:
                    break  # the session was ended
                await send({"type": "http.response.body", "body": sse_event(message), "more_body": True})
                continue
            getter.cancel()
            if not done:
                await send({"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True})
    except OSError:
        pass  # the agent went away mid-write
    finally:
        gone.cancel()
        notifier.forget(listener)
    with contextlib.suppress(Exception):
        await send({"type": "http.response.body", "body": b""})


class StandaloneStream:
    """`GET /mcp`: the session's stream of server-initiated notifications, open until the agent leaves."""

    __slots__ = ("notifier", "sessions")

    def __init__(self, notifier: Notifier, sessions: LiveSessions) -> None:
        self.notifier, self.sessions = notifier, sessions

    async def __call__(self, x: Exchange) -> None:
        if "text/event-stream" not in x.headers.get("accept", ""):
            await plain(x.send, 406, {"error": "not_acceptable", "message": "GET /mcp needs Accept: text/event-stream"})
            return
        session = named_session(x, self.sessions, "GET /mcp")
        if isinstance(session, Refusal):
            await session(x)
            return
        listener = self.notifier.listen(session.handle)
        await serve_listener(self.notifier, listener, [b": bastion\n\n"], x.receive, x.send)


def listen_problem(wanted: Any, max_resources: int) -> str | None:
    if not isinstance(wanted, dict):
        return "subscriptions/listen needs 'params.notifications', an object"
    uris = wanted.get("resourceSubscriptions")
    if uris is None:
        return None
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        return "'params.notifications.resourceSubscriptions' must be a list of resource URIs (strings)"
    if len(uris) > max_resources:
        return f"'params.notifications.resourceSubscriptions' names {len(uris)} resources; at most {max_resources}"
    return None


class ListenSubscriptions:
    """The upstream resource subscriptions of `subscriptions/listen` streams, each one audited."""

    def __init__(self, catalog: Catalog, path: RequestPath, sender: RoutedSender, audits: AuditRecorder) -> None:
        self.catalog, self.path, self.sender, self.audits = catalog, path, sender, audits

    async def hold(self, ctx: RequestContext, uris: list[str]) -> tuple[list[tuple[str, str]], list[AuditEvent]]:
        """Subscribe upstream, on behalf of one stream (`ctx.session`), to the resources the key may read.

        The (server, uri) pairs that took, and the audit event of each subscription tried."""
        owners = [(uri, entry) for uri in dict.fromkeys(uris) if (entry := self.catalog.resource_owner(uri))]
        if not owners:
            return [], []
        answer = await self.path.visible(
            ctx.caller, PairList.of([(e.server, f"resource:{u}") for u, e in owners]), ctx.include_servers, None
        )
        if answer.error is not None:
            return [], []
        held: list[tuple[str, str]] = []
        audits: list[AuditEvent] = []
        for uri, entry in (owners[i] for i in answer.allowed):
            if await self._send(ctx, "resources/subscribe", entry.server, uri, entry, audits):
                held.append((entry.server, uri))
        return held, audits

    async def release(self, ctx: RequestContext, held: list[tuple[str, str]]) -> list[AuditEvent]:
        """Undo `hold`; the audit event of each unsubscribe."""
        audits: list[AuditEvent] = []
        for server, uri in held:
            entry = self.catalog.resource_owner(uri)
            if entry is not None and entry.server == server:
                await self._send(ctx, "resources/unsubscribe", server, uri, entry, audits)
        return audits

    async def _send(
        self, ctx: RequestContext, method: str, server: str, uri: str, entry: CatalogEntry, audits: list[AuditEvent]
    ) -> bool:
        self.audits.owed += 1
        outcome = await self.sender.request(ctx, method, entry, {"uri": uri}, f"resource:{uri}")
        ending = Ending(outcome.error, outcome.is_error, outcome.upstream_ms, outcome.execution)
        audits.append(self.audits.record(ctx, "resource_subscribe", uri, server, entry.tool, ending))
        return outcome.error is None


class Listen(Check):
    """2026-07-28 `subscriptions/listen`: acknowledge what is honoured, then stream it.

    The upstream subscriptions it holds are released when the agent leaves, each (un)subscribe audited."""

    __slots__ = ("max_resources", "notifier", "owe", "subscriptions")

    methods = frozenset({"subscriptions/listen"})
    era = True

    def __init__(
        self,
        notifier: Notifier | None,
        subscriptions: ListenSubscriptions,
        owe: Callable[[Iterable[AuditEvent]], None],
        max_resources: int,
    ) -> None:
        self.notifier, self.subscriptions, self.owe, self.max_resources = notifier, subscriptions, owe, max_resources

    def check(self, x: Exchange) -> Answering | None:
        return self._listen if self.notifier is not None else None

    async def _listen(self, x: Exchange) -> None:
        assert self.notifier is not None
        if not x.sse_ok:  # the answer IS a notification stream
            message = "subscriptions/listen needs Accept: text/event-stream"
            await plain(x.send, 406, {"error": "not_acceptable", "message": message})
            return
        ctx = x.ctx
        params = x.params
        wanted = params.get("notifications") if isinstance(params, dict) else None
        if (problem := listen_problem(wanted, self.max_resources)) is not None:
            await respond(x.send, error_body(ctx.request_id, INVALID_PARAMS, problem), 400, False, None)
            return
        assert isinstance(wanted, dict)
        kinds = frozenset(k for k in ("tools", "prompts", "resources") if wanted.get(f"{k}ListChanged") is True)
        uris: list[str] = wanted.get("resourceSubscriptions") or []
        ctx.session = f"listen-{new_id()}"  # the upstream subscriptions held for this stream
        held, audits = await self.subscriptions.hold(ctx, uris) if uris else ([], [])
        self.owe(audits)
        honoured: dict[str, Any] = {f"{k}ListChanged": True for k in sorted(kinds)}
        if held:
            honoured["resourceSubscriptions"] = [uri for _, uri in held]
        listener = self.notifier.listen(
            None, kinds=kinds, resources=set(held), subscription_id=ctx.request_id, key_id=ctx.caller.key_id
        )
        ack = {
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": honoured, "_meta": {SUBSCRIPTION_ID_META_KEY: ctx.request_id}},
        }
        try:
            await serve_listener(self.notifier, listener, [sse_event(ack)], x.receive, x.send)
        finally:
            if held:
                self.owe(await self.subscriptions.release(ctx, held))
