"""A lean `tools/call` on an established streamable-HTTP session.

One POST on the session's own pooled connection, the answer read with orjson (`json_codec`: integers
beyond 64 bits kept exact).

The SDK's per-call path runs each request through its dispatcher, two in-memory streams, a task
group per message, a pydantic round trip of the JSON-RPC envelope both ways and an OpenTelemetry
span; py-spy put about half of the executor's CPU per call there (docs/benchmarks.md). This path
keeps what the SDK decides per call (the era's `_meta` and `Mcp-*` headers via the session's own
stamp, the session id and protocol version header via the transport, the result checks of
`ClientSession.send_request`) and skips the plumbing.

The SDK keeps everything else: session setup, discovery, listings, notifications, server-to-client
requests and their answers, the GET stream. Whatever arrives on a call's SSE answer besides the
answer itself (log messages, list changes, server requests) is handed to the SDK session exactly as
its transport would have, so it is handled as before; except log messages, which go to `on_log` (the
session's logging callback) before the answer is returned, so the call's outcome counts them and
the agent gets them before the result. A redirect makes the upstream fall back to
the SDK path for good (it follows same-origin redirects; the request was not processed); so do
upstreams reached through an environment proxy or signed by an httpx2 `Auth` on the SDK's client.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import anyio
import httpx2
import mcp_types as types
from mcp.client._transport import TransportStreams
from mcp.client.session import ClientSession
from mcp.client.streamable_http import MCP_SESSION_ID, StreamableHTTPTransport, StreamWriter
from mcp.shared._compat import resync_tracer
from mcp.shared._context_streams import create_context_streams
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp.shared.message import SessionMessage
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, INVALID_REQUEST, PARSE_ERROR, jsonrpc_message_adapter
from pydantic import ValidationError

from libs.common.contracts import json_codec
from libs.common.web.egress_rules import EgressRules
from libs.common.web.guarded_http import shared_tls

from ...answer_limits import AnswerTooLarge, answer_cutoff, sse_event_limit
from .http1 import HttpPool
from .http1_connection import BodyTooLarge, Response
from .lean_results import answer_of, checked, error_of

__all__ = [
    "HttpLink",
    "LeanLink",
    "Position",
    "Redirected",
    "StreamCut",
    "Unauthorized",
    "deliver_log",
    "lean_http_transport",
    "next_request_id",
    "stamp",
    "tell_cancelled",
]

log = logging.getLogger(__name__)

_ids = itertools.count(1)
"""Request ids of lean sends: strings ("bastion-1"), never equal to the SDK's integer ids."""

_CANCEL_REASON = "the gateway abandoned the call"
_ERROR_BODY = 1 << 20
"""Bytes of an HTTP error answer read at most, for the JSON-RPC error it may hold."""
_MAX_CONNECTIONS = 256
"""Connections to one upstream at most, as for the SDK's client (`http_client`)."""
_DEFAULT_RETRY_MS = 1000
_MAX_RETRY_MS = 30_000
"""A server's `retry:` is honoured up to this: the call's own deadline still bounds the whole wait."""
_RESUMPTIONS = 2
"""Resumptions in a row that bring no new event before the call fails (the SDK's MAX_RECONNECTION_ATTEMPTS)."""


class Redirected(Exception):
    """The server answered the POST with a redirect: nothing ran; send it the SDK's way."""


class Unauthorized(Exception):
    """The server refused the POST's credentials (HTTP 401): nothing ran.

    Send it the SDK's way, whose auth flow fetches or renews the upstream's OAuth token and sends it
    again."""


@runtime_checkable
class Bearer(Protocol):
    """An OAuth token source lean sends can use (`oauth.OAuthTokens`)."""

    def lean_authorization(self) -> str | bool | None:
        """The `Authorization` header value to send, None to send none (no token was ever needed).

        Or False when the SDK's way must send this request (the token is due for renewal)."""


class LeanLink(Protocol):
    """A live session's way of sending one request without the SDK's dispatcher.

    Streamable HTTP (`HttpLink`) or stdio (`lean_stdio.StdioLink`)."""

    usable: bool
    """False: send the SDK's way (after a redirect, say)."""
    sent: int
    """Requests sent the lean way so far."""

    async def request(self, session: ClientSession, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The request's result as a wire dict; raises what `ClientSession.send_request` raises."""
        ...


LogFn = Callable[[types.LoggingMessageNotificationParams], Awaitable[None]]
_LOG = "notifications/message"


async def deliver_log(on_log: LogFn, params: Any) -> None:
    """A log message met during a lean call, given to the session's logging callback at once.

    (The session would handle it in a task of its own, maybe after the call's answer)."""
    try:
        validated = types.LoggingMessageNotificationParams.model_validate(params or {}, by_name=False)
    except ValidationError:
        log.warning("upstream sent a malformed log message during a call; ignored")
        return
    await on_log(validated)


def next_request_id() -> str:
    """A lean request's id: a string ("bastion-1"), never equal to the SDK's integer ids."""
    return f"bastion-{next(_ids)}"


def stamp(session: ClientSession, method: str, params: dict[str, Any]) -> tuple[dict[str, Any], CallOptions]:
    """`{"method", "params"}` with the era's `_meta` and the options the SDK's session would give.

    The options are the `Mcp-*` headers; the caller's params and their `_meta` stay as they were."""
    params = dict(params)
    if isinstance(meta := params.get("_meta"), dict):
        params["_meta"] = dict(meta)
    data: dict[str, Any] = {"method": method, "params": params}
    opts: CallOptions = {}
    session._stamp(data, opts)
    return data, opts


def tell_cancelled(session: ClientSession, request_id: str, tasks: set[asyncio.Task[None]]) -> None:
    """Tell the server we gave up on `request_id`.

    (The handshake-era wire; the 2026-07-28 transport drops it, closing the request having said it), in
    the background: the caller may be unwinding a cancellation."""
    notification = types.CancelledNotification(
        params=types.CancelledNotificationParams(request_id=request_id, reason=_CANCEL_REASON)
    )
    task = asyncio.get_running_loop().create_task(session.send_notification(notification))
    tasks.add(task)
    task.add_done_callback(tasks.discard)


@dataclass(eq=False)
class HttpLink:
    """What a lean send needs of one live streamable-HTTP session."""

    http: HttpPool
    transport: StreamableHTTPTransport
    inbound: StreamWriter
    """The SDK session's read side: messages that are not our answer go there."""
    on_unauthorized: Callable[[], None] | None = None
    on_log: LogFn | None = None
    """What the SDK session calls for a log message (`AgentLink.on_log`): called for those met on a
    call's stream, before its answer is returned."""
    usable: bool = True
    """False once the server redirected a POST: the SDK path (which follows redirects) from then on."""
    bearer: Bearer | None = None
    """The upstream's OAuth tokens, when Bastion is its OAuth client: their header goes with each POST."""
    sent: int = 0
    """Requests sent the lean way so far."""
    max_result: int | None = None
    """`BASTION_MAX_RESULT_BYTES`: a JSON answer is not read past `answer_cutoff` of it
    (`AnswerTooLarge`); an SSE answer is bounded per event (`max_sse_event_size`)."""
    cancels: set[asyncio.Task[None]] = field(default_factory=set)
    """The `notifications/cancelled` on their way (`tell_cancelled`)."""

    async def request(self, session: ClientSession, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send one request on `session`'s connection and return its result as a wire dict.

        Raises what `ClientSession.send_request` raises for the same answers (`MCPError` for an
        error answer or a failed exchange, pydantic's `ValidationError` for a result that breaks the
        schema of the negotiated version), `Redirected`, or `OSError`s (`http1.HttpClosed`)."""
        authorization = self.bearer.lean_authorization() if self.bearer is not None else None
        if authorization is False:
            raise Unauthorized("the upstream's OAuth token is due for renewal")
        request_id = next_request_id()
        data, opts = stamp(session, method, params)  # the era's _meta and Mcp-* headers, as the SDK sends them
        headers = self.headers(authorization, opts.get("headers"))
        body = json_codec.dumps({"jsonrpc": "2.0", "id": request_id, **data})
        self.sent += 1
        try:
            raw = await self.post(body, headers, request_id)
        except asyncio.CancelledError:  # the deadline, or the agent cancelled
            tell_cancelled(session, request_id, self.cancels)
            raise
        return checked(method, session.protocol_version or "2025-11-25", raw)

    def headers(self, authorization: str | bool | None, stamped: dict[str, str] | None) -> dict[str, str]:
        """A POST's headers: the transport's (session id, protocol version), `authorization`, the stamp's."""
        transport = self.transport
        headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        if transport.session_id:
            headers[MCP_SESSION_ID] = transport.session_id
        if (version := transport._protocol_version_header) is not None:
            headers[MCP_PROTOCOL_VERSION_HEADER] = version
        if isinstance(authorization, str):
            headers["authorization"] = authorization
        if stamped:
            headers.update(stamped)
        return headers

    async def post(self, body: bytes, headers: dict[str, str], request_id: str) -> dict[str, Any]:
        """POST `body` with `headers` on a connection of the pool, and its result (`answer`, `resume`)."""
        position = Position()
        async with self.http.post(body, headers) as response:
            with contextlib.suppress(StreamCut):
                return await self.answer(response, request_id, position)
        return await self.resume(headers, request_id, position)

    async def answer(self, response: Response, request_id: str, position: Position) -> dict[str, Any]:
        """The result on `response` (JSON or SSE), raising as `ClientSession.send_request` would.

        `StreamCut` when an SSE answer ends before the result: the caller gives the connection back, then
        `resume`s at `position`."""
        status = response.status
        if 300 <= status < 400 and "location" in response.headers:
            self.usable = False
            raise Redirected(response.headers["location"])
        if status == 401:
            if self.bearer is not None:  # the SDK's auth flow gets (or renews) a token and resends
                raise Unauthorized(response.headers.get("www-authenticate", ""))
            if self.on_unauthorized is not None:
                self.on_unauthorized()
        if status == 202:
            raise MCPError(INVALID_REQUEST, "server answered a request with 202 Accepted")
        content_type = response.headers.get("content-type", "").lower()
        if status >= 400:
            raise await _http_error(response, content_type)
        if content_type.startswith("application/json"):
            try:
                return answer_of(json_codec.loads(await self._body(response)))
            except ValueError as exc:
                raise MCPError(PARSE_ERROR, f"Failed to parse JSON response: {exc}") from None
        if not content_type.startswith("text/event-stream"):
            raise MCPError(INVALID_REQUEST, f"Unexpected content type: {content_type}")
        return await self._read_stream(response, request_id, position)

    async def _body(self, response: Response) -> bytes:
        """A JSON answer's body, read no further than `answer_cutoff(max_result)`."""
        if self.max_result is None:
            return await response.read()
        limit = answer_cutoff(self.max_result)
        if not response.done:  # (one that is all here already is measured by reading it)
            declared = _declared(response)
            if declared is not None and declared > limit:
                raise AnswerTooLarge(self.max_result, declared)  # refused unread
        try:
            return await response.read(limit)
        except BodyTooLarge:
            raise AnswerTooLarge(self.max_result, _declared(response)) from None

    async def resume(self, headers: dict[str, str], request_id: str, position: Position) -> dict[str, Any]:
        """The answer of a call whose SSE stream was cut before it.

        Resumed with `Last-Event-ID` (a GET, after the server's `retry:` delay or a second), as the SDK's
        transport resumes, when the server numbered its events. At most `_RESUMPTIONS` tries in a row
        that bring no new event (refused, or cut again before one): a server that keeps cutting with
        nothing to show does not hold the call."""
        if position.last_id is None:
            raise MCPError(CONNECTION_CLOSED, "SSE stream ended without a response")
        failures = 0
        while failures < _RESUMPTIONS:
            await asyncio.sleep(min(position.retry_ms, _MAX_RETRY_MS) / 1000)
            before = position.last_id
            resume = {**headers, "accept": "text/event-stream", "last-event-id": before}
            resume.pop("content-type", None)
            async with self.http.get(resume) as response:
                kind = response.headers.get("content-type", "").lower()
                if response.status == 200 and kind.startswith("text/event-stream"):
                    with contextlib.suppress(StreamCut):
                        return await self._read_stream(response, request_id, position)
                else:
                    log.info("upstream refused resuming a cut SSE answer (HTTP %s, %s)", response.status, kind)
            failures = failures + 1 if position.last_id == before else 0
        raise MCPError(CONNECTION_CLOSED, "SSE stream ended and reconnection attempts were exhausted")

    async def _read_stream(self, response: Response, request_id: str, position: Position) -> dict[str, Any]:
        """The answer on `response`'s events; `StreamCut` when they end without it."""
        limit = self.transport.max_sse_event_size
        async with contextlib.aclosing(_sse_events(response.iter_any(), limit, position)) as events:
            async for event, data in events:
                if event != "message":
                    continue
                try:
                    message = json_codec.loads(data)
                except ValueError as exc:
                    raise MCPError(PARSE_ERROR, f"Failed to parse SSE message: {exc}") from None
                if isinstance(message, dict) and message.get("id") == request_id and "method" not in message:
                    return answer_of(message)
                if self.on_log is not None and isinstance(message, dict) and message.get("method") == _LOG:
                    await deliver_log(self.on_log, message.get("params"))
                    continue
                await self._hand_over(data)
        raise StreamCut

    async def _hand_over(self, data: str) -> None:
        """A notification or server request met on our call's stream: the SDK session handles it."""
        try:
            message = jsonrpc_message_adapter.validate_json(data, by_name=False)
        except ValidationError:
            log.warning("upstream sent a malformed JSON-RPC message during a call; ignored")
            return
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):  # session closing
            await self.inbound.send(SessionMessage(message))


def _declared(response: Response) -> int | None:
    """The body's length as its `content-length` gives it; None when it does not."""
    declared = response.headers.get("content-length", "")
    return int(declared) if declared.isdigit() else None


async def _http_error(response: Response, content_type: str) -> MCPError:
    """The error `StreamableHTTPTransport` reports for a non-2xx answer."""
    if content_type.startswith("application/json"):
        try:
            message = json_codec.loads(await response.read(_ERROR_BODY))
            if isinstance(message, dict) and isinstance(error := message.get("error"), dict):
                return error_of(error)
        except (ValueError, BodyTooLarge):
            pass
    if response.status == 404:
        return MCPError(INVALID_REQUEST, "Session terminated")
    return MCPError(INTERNAL_ERROR, "Server returned an error response")


class StreamCut(Exception):
    """A call's SSE stream ended before its answer."""


@dataclass
class Position:
    """Where a call's SSE stream stands.

    The last event id the server gave (`id:`) and the delay it asked for before reconnecting (`retry:`),
    as the SSE spec keeps them across events."""

    last_id: str | None = None
    retry_ms: int = _DEFAULT_RETRY_MS


async def _sse_events(
    chunks: AsyncIterator[bytes], max_size: int | None, position: Position | None = None
) -> AsyncGenerator[tuple[str, str]]:
    """(event type, data) of each server-sent event with data, as the SSE spec frames them.

    `position` follows the stream's `id:` and `retry:` fields."""
    pending = b""
    event, size = "", 0
    data: list[str] = []
    async for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            line = line.removesuffix(b"\r")
            if not line:
                if text := "\n".join(data):  # no data (a priming event): nothing to dispatch
                    yield event or "message", text
                event, data, size = "", [], 0
                continue
            name, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if name == b"data":
                data.append(value.decode())
                size += len(value)
            elif name == b"event":
                event = value.decode()
            elif position is not None and name == b"id" and value and b"\x00" not in value:
                position.last_id = value.decode()
            elif position is not None and name == b"retry" and value.isdigit():
                position.retry_ms = int(value)
        if max_size is not None and size + len(pending) > max_size:
            raise MCPError(CONNECTION_CLOSED, f"SSE stream failed: an event is larger than {max_size} bytes")


def _proxied(url: str) -> bool:
    """True when httpx2 would send to `url` through a proxy from the environment.

    (HTTP(S)_PROXY, ALL_PROXY, not exempted by NO_PROXY): such upstreams keep the SDK path (the pool
    speaks to the origin only)."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(parts.hostname or "", proxies)  # type: ignore[attr-defined]


@asynccontextmanager
async def lean_http_transport(
    url: str,
    client: httpx2.AsyncClient,
    headers: dict[str, str],
    on_unauthorized: Callable[[], None] | None = None,
    on_log: LogFn | None = None,
    max_result: int | None = None,
    egress: EgressRules | None = None,
) -> AsyncIterator[tuple[TransportStreams, HttpLink]]:
    """`mcp.client.streamable_http.streamable_http_client` on `client`, also yielding the `HttpLink` lean sends use.

    The SDK function keeps its transport object to itself, and lean sends go on an connection pool of
    their own (`http1.HttpPool`: measured ~15-25 µs of CPU per POST, against ~120 for aiohttp and ~1,000
    for httpx2) with the same `headers`, trust store and egress rules (`libs.common.contracts.egress`;
    None: public addresses only)."""
    transport = StreamableHTTPTransport(url, max_sse_event_size=sse_event_limit(max_result))
    read_writer, read_stream = create_context_streams[SessionMessage | Exception](0)
    write_stream, write_reader = create_context_streams[SessionMessage](0)
    http = HttpPool(
        url,
        headers,
        ssl_context=shared_tls(),
        limit=_MAX_CONNECTIONS,
        addresses=(egress or EgressRules()).addresses,
    )
    try:
        async with read_writer, read_stream, write_stream, write_reader, anyio.create_task_group() as tg:

            def start_get_stream() -> None:
                tg.start_soon(transport.handle_get_stream, client, read_writer)

            tg.start_soon(transport.post_writer, client, write_reader, read_writer, write_stream, start_get_stream, tg)
            streams: TransportStreams = (read_stream, write_stream)
            try:
                # an httpx2 `Auth` signs the SDK's requests only, except Bastion's own OAuth tokens,
                # whose header lean sends carry too (most HTTP upstreams have them, unused until a 401)
                auth = client.auth
                bearer = auth if isinstance(auth, Bearer) else None
                usable = (auth is None or bearer is not None) and not _proxied(url)
                link = HttpLink(
                    http,
                    transport,
                    read_writer,
                    on_unauthorized,
                    on_log,
                    usable=usable,
                    bearer=bearer,
                    max_result=max_result,
                )
                yield streams, link
            finally:
                if transport.session_id:
                    await transport.terminate_session(client)
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await http.close()
    await resync_tracer()
