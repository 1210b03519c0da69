"""`/mcp`: MCP streamable HTTP, written against ASGI directly because it is the hot path.

Order of checks, cheapest and least revealing first: key or OAuth access token (401, with the RFC 9728
challenge naming the protected resource metadata) → body size (413) → Accept (406)
→ JSON (400/-32700) → JSON-RPC shape (400/-32600) → protocol version and session → method.
Nothing here raises into the server: every failure is an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PROTOCOL_VERSION_HEADER,
)
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY
from mcp_types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, KNOWN_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from libs.common import json_codec, tracing
from libs.common.codemode import CODE_MODE_HEADER
from libs.common.messages import AuditEvent, CancelCall, new_id

from .access_tokens import Authenticator
from .answers import SSE_HEADERS, Answer, plain, respond
from .context import RequestContext
from .field_limits import FieldLimits, Oversized, header_patterns, oversized
from .handlers import Handlers
from .hosts import HostGuard
from .keys import AuthFailure, KeyDirectory
from .notifications import Notifier
from .protocol import DEFAULT_LEGACY_VERSION, error_body
from .requests import (
    Gone,
    TooLarge,
    agent_requests,
    disconnected,
    echo_id,
    envelope_problem,
    listen_problem,
    modern_rejection,
    positive_float,
    read_body,
    repeated_headers,
)
from .session_state import SessionState, session_key
from .sessions import SessionCodec, SessionInfo
from .streams import CallStreams, sse_event

__all__ = ["McpEndpoint"]

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_SESSION_HEADER = "mcp-session-id"
_SESSION_NOT_FOUND = -32001  # what the SDK answers for an unknown session, with HTTP 404
_ROUTED = frozenset({"tools/call", "prompts/get", "resources/read", "completion/complete"})
"""Requests that run upstream, so an agent may cancel them."""
_KEEPALIVE = 15.0
"""Seconds between SSE comments on an idle standalone stream, so proxies do not cut it."""
_SESSION_GONE = "Session not found: it expired, was ended, belongs to another key or is invalid; send initialize again"


class McpEndpoint:
    def __init__(
        self,
        handlers: Handlers,
        keys: KeyDirectory | Authenticator,
        sessions: SessionCodec,
        emit_audit: Callable[[AuditEvent], object],
        max_body_bytes: int,
        prefer_sse: bool = False,
        hosts: HostGuard | None = None,
        streams: CallStreams | None = None,
        notifier: Notifier | None = None,
        fields: FieldLimits | None = None,
        max_listen_resources: int = 100,
    ) -> None:
        self.handlers, self.keys, self.sessions = handlers, keys, sessions
        self.streams, self.notifier = streams, notifier
        self.hosts = hosts
        self.emit_audit = emit_audit
        self.max_body_bytes = max_body_bytes
        self.prefer_sse = prefer_sse
        self.fields = fields or FieldLimits()
        self.max_listen_resources = max_listen_resources

    @property
    def state(self) -> SessionState:
        return self.handlers.state

    def _session(self, session_id: str, key_id: str) -> SessionInfo | None:
        """The agent's session if its id is genuine, this key's, not expired and not ended."""
        session = self.sessions.verify(session_id, key_id)
        if session is None or self.state.is_ended(session_key(session_id)):
            return None
        return session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw_headers}
        repeated = repeated_headers(raw_headers) if len(headers) != len(raw_headers) else ()
        if self.hosts is not None and (
            refused := self.hosts.problem(headers.get("host"), headers.get("origin"), repeated)
        ):
            await plain(send, 403, {"error": "forbidden_host", "message": refused})
            return
        caller = self.keys.authenticate(headers.get("authorization"))
        if isinstance(caller, AuthFailure):
            await plain(
                send,
                401,
                {"error": caller.error, "message": caller.message},
                [
                    (
                        b"www-authenticate",
                        (caller.challenge or f'Bearer realm="bastion", error="{caller.error}"').encode(),
                    )
                ],
            )
            return
        method = scope["method"]
        if method == "DELETE":
            await self._end_session(headers.get(_SESSION_HEADER), caller.key_id, send)
            return
        if method == "GET" and self.notifier is not None:
            await self._standalone_stream(headers, caller.key_id, receive, send)
            return
        if method != "POST":
            await plain(
                send,
                405,
                {"error": "method_not_allowed", "message": "use POST to send MCP messages"},
                [(b"allow", b"GET, POST, DELETE")],
            )
            return

        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(send, int(declared))
            return
        try:
            body = await read_body(receive, self.max_body_bytes)
        except TooLarge:
            await self._too_large(send, None)
            return
        except Gone:
            return  # nobody to answer

        accept = headers.get("accept", "*/*")
        json_ok = "application/json" in accept or "*/*" in accept or "application/*" in accept
        sse_ok = "text/event-stream" in accept
        if not json_ok and not sse_ok:
            await plain(
                send,
                406,
                {"error": "not_acceptable", "message": "Accept must include application/json or text/event-stream"},
            )
            return
        answer = Answer(send, sse_ok and (self.prefer_sse or not json_ok))
        reply = answer.final

        try:
            message = json_codec.loads(body)  # integers beyond 64 bits exact
        except ValueError as exc:  # orjson.JSONDecodeError and json.JSONDecodeError are ValueErrors
            await reply(error_body(None, PARSE_ERROR, f"Parse error: the body is not valid JSON ({exc})"), 400)
            return
        problem = envelope_problem(message)
        if problem:
            await reply(error_body(echo_id(message), INVALID_REQUEST, problem), 400)
            return
        if (too_big := oversized(message, self.fields)) is not None:
            await reply(too_big.body(None if too_big.field == "id" else message.get("id")), 400)
            return
        if "method" not in message or "id" not in message:
            # a notification, or an agent's answer to a request Bastion relayed from an upstream
            if "method" not in message and self.streams is not None:
                await self.streams.deliver_reply(caller.key_id, message)
            elif message.get("method") == "notifications/cancelled":
                await self._cancelled(headers, caller.key_id, message.get("params"))
            await plain(send, 202, None)
            return

        request_id, rpc_method = message["id"], message["method"]
        include_servers = header_patterns(
            "X-Bastion-Include-Servers", headers.get("x-bastion-include-servers"), self.fields
        )
        include_tools = header_patterns("X-Bastion-Include-Tools", headers.get("x-bastion-include-tools"), self.fields)
        if isinstance(include_servers, Oversized):
            await reply(include_servers.body(request_id), 400)
            return
        if isinstance(include_tools, Oversized):
            await reply(include_tools.body(request_id), 400)
            return
        ctx = RequestContext(
            caller=caller,
            version=DEFAULT_LEGACY_VERSION,
            request_id=request_id,
            request_bytes=len(body),
            include_servers=include_servers,
            include_tools=include_tools,
            timeout=positive_float(headers.get("x-bastion-timeout")),
            emit=answer.event if sse_ok else None,
            code_mode=headers.get(CODE_MODE_HEADER),
        )
        requested = headers.get(MCP_PROTOCOL_VERSION_HEADER)
        modern = requested in MODERN_PROTOCOL_VERSIONS
        extra: list[tuple[bytes, bytes]] = []
        if modern:
            rejection = modern_rejection(message, raw_headers, headers)
            if rejection is not None:
                status = ERROR_CODE_HTTP_STATUS.get(rejection.code, 400)
                await reply(error_body(request_id, rejection.code, rejection.message, rejection.data), status)
                return
            ctx.version = requested  # type: ignore[assignment]  # modern: one of the version strings
            ctx.client = ("input_required",)  # 2026-07-28: the agent resolves input requests itself
        elif requested is not None and requested not in HANDSHAKE_PROTOCOL_VERSIONS:
            await reply(
                error_body(
                    request_id,
                    UNSUPPORTED_PROTOCOL_VERSION,
                    f"Unsupported protocol version {requested!r}",
                    {"supported": list(KNOWN_PROTOCOL_VERSIONS), "requested": requested},
                ),
                400,
            )
            return
        elif rpc_method != "initialize":
            session_id = headers.get(_SESSION_HEADER)
            if session_id:
                session = self._session(session_id, caller.key_id)
                if session is None:
                    await reply(error_body(request_id, _SESSION_NOT_FOUND, _SESSION_GONE), 404)
                    return
                ctx.version = requested or session.protocol_version
                ctx.session = session_key(session_id)
                ctx.client = session.client
            elif requested:
                ctx.version = requested

        if rpc_method == "subscriptions/listen" and modern and self.notifier is not None:
            await self._listen(ctx, message, sse_ok, receive, send)
            return
        # 2026-07-28 has no notifications/cancelled: closing the response stream cancels the request
        watch = (
            asyncio.ensure_future(self._cancel_on_disconnect(ctx, receive))
            if modern and rpc_method in _ROUTED
            else None
        )
        # From here on the request has reached its handler: whatever happens (a failure of ours,
        # an answer that cannot be encoded or sent, cancellation), an audited method ends in
        # exactly one audit event, emitted in the `finally` below.
        audit: AuditEvent | None = None
        sent = 0
        try:
            try:
                # one trace from the agent's `traceparent` on: relayed in NATS headers, then in the upstream's `_meta`
                with tracing.server_span("ingress", "POST /mcp", headers) as span:
                    if span is not None:
                        ctx.trace_id = tracing.trace_id(span)
                    payload, audit = await self.handlers.dispatch(ctx, rpc_method, message.get("params"))
            except asyncio.CancelledError:
                audit = self.handlers.interrupted(ctx, rpc_method, message.get("params"))
                raise
            finally:
                if watch is not None:
                    watch.cancel()
            if rpc_method == "initialize" and not modern and "result" in payload:
                client = agent_requests(message.get("params"))
                extra.append((b"mcp-session-id", self.sessions.issue(ctx.version, caller.key_id, client).encode()))
            status = 200
            if "error" in payload:
                if modern:
                    status = ERROR_CODE_HTTP_STATUS.get(payload["error"]["code"], 200)
                retry_after = (payload["error"].get("data") or {}).get("retry_after")
                if isinstance(retry_after, int | float):
                    extra.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
            sent = await reply(payload, status, extra)
        finally:
            if audit is not None:
                audit.response_bytes = sent
                self.emit_audit(audit)

    async def _cancel_on_disconnect(self, ctx: RequestContext, receive: Receive) -> None:
        """The agent closed the stream before the answer: the executor abandons the call (and tells
        the upstream); the handler still finishes, so the audit event is written."""
        await disconnected(receive)
        if ctx.call_id is not None:
            await self.handlers.gateway.abandon(ctx.call_id)

    async def _cancelled(self, headers: dict[str, str], key_id: str, params: Any) -> None:
        request_id = params.get("requestId") if isinstance(params, dict) else None
        session_id = headers.get(_SESSION_HEADER)
        if not isinstance(request_id, str | int) or isinstance(request_id, bool) or not session_id:
            return
        if self._session(session_id, key_id) is not None:
            cancel = CancelCall(key_id=key_id, session=session_key(session_id), request_id=request_id)
            await self.handlers.gateway.cancel(cancel)

    async def _standalone_stream(self, headers: dict[str, str], key_id: str, receive: Receive, send: Send) -> None:
        """`GET /mcp`: the session's stream of server-initiated notifications, open until the agent leaves."""
        assert self.notifier is not None
        if "text/event-stream" not in headers.get("accept", ""):
            await plain(send, 406, {"error": "not_acceptable", "message": "GET /mcp needs Accept: text/event-stream"})
            return
        session_id = headers.get(_SESSION_HEADER)
        if not session_id:
            await plain(send, 400, {"error": "missing_session", "message": "GET /mcp needs an Mcp-Session-Id header"})
            return
        if self._session(session_id, key_id) is None:
            await plain(send, 404, error_body(None, _SESSION_NOT_FOUND, _SESSION_GONE))
            return
        listener = self.notifier.listen(session_key(session_id))
        await self._serve_listener(listener, [b": bastion\n\n"], receive, send)

    async def _listen(
        self, ctx: RequestContext, message: dict[str, Any], sse_ok: bool, receive: Receive, send: Send
    ) -> None:
        """2026-07-28 `subscriptions/listen`: acknowledge what is honoured, then stream it."""
        assert self.notifier is not None
        if not sse_ok:  # the answer IS a notification stream
            await plain(
                send,
                406,
                {"error": "not_acceptable", "message": "subscriptions/listen needs Accept: text/event-stream"},
            )
            return
        params = message.get("params")
        wanted = params.get("notifications") if isinstance(params, dict) else None
        problem = listen_problem(wanted, self.max_listen_resources)
        if problem is not None:
            await respond(send, error_body(ctx.request_id, INVALID_PARAMS, problem), 400, False, None)
            return
        assert isinstance(wanted, dict)
        kinds = frozenset(k for k in ("tools", "prompts", "resources") if wanted.get(f"{k}ListChanged") is True)
        uris: list[str] = wanted.get("resourceSubscriptions") or []
        ctx.session = f"listen-{new_id()}"  # the upstream subscriptions held for this stream
        held, audits = await self.handlers.hold_subscriptions(ctx, uris) if uris else ([], [])
        for audit in audits:
            self.emit_audit(audit)
        honoured: dict[str, Any] = {f"{k}ListChanged": True for k in sorted(kinds)}
        if held:
            honoured["resourceSubscriptions"] = [uri for _, uri in held]
        listener = self.notifier.listen(None, kinds=kinds, resources=set(held), subscription_id=ctx.request_id)
        ack = {
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": honoured, "_meta": {SUBSCRIPTION_ID_META_KEY: ctx.request_id}},
        }
        try:
            await self._serve_listener(listener, [sse_event(ack)], receive, send)
        finally:
            if held:
                for audit in await self.handlers.release_subscriptions(ctx, held):
                    self.emit_audit(audit)

    async def _serve_listener(self, listener: Any, opening: list[bytes], receive: Receive, send: Send) -> None:
        """Stream what `listener` collects until the agent goes away; keep idle streams alive."""
        assert self.notifier is not None
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
            self.notifier.forget(listener)
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b""})

    async def _end_session(self, session_id: str | None, key_id: str, send: Send) -> None:
        """`DELETE /mcp`: the agent is done with its session; every replica refuses it from now on."""
        if not session_id:
            await plain(send, 400, {"error": "missing_session", "message": "DELETE needs an Mcp-Session-Id header"})
            return
        session = self._session(session_id, key_id)
        if session is None:
            await plain(send, 404, error_body(None, _SESSION_NOT_FOUND, _SESSION_GONE))
            return
        try:
            await self.state.end(session_key(session_id), self.sessions.expires_at(session))
        except Exception as exc:  # KV unreachable: say so rather than claim the session ended everywhere
            log.warning("cannot record the end of a session (%s)", exc)
            await plain(
                send,
                503,
                {"error": "unavailable", "message": "the session could not be ended on every replica; retry"},
            )
            return
        await plain(send, 200, {})

    async def _too_large(self, send: Send, size: int | None) -> None:
        what = f"{size} bytes" if size is not None else "larger than allowed"
        await plain(
            send,
            413,
            error_body(
                None,
                INVALID_REQUEST,
                f"request body is {what}; this gateway accepts at most {self.max_body_bytes} bytes",
            ),
        )
