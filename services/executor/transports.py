"""Open the SDK transport a `ServerConfig` asks for, and notice when it ends.

The SDK gives no event for "the server went away" (a stdio child exiting, an SSE stream
dropping): the session just stops receiving. `_WatchedReadStream` wraps the read side and calls
back on end-of-stream so the owner reconnects at once instead of on the next failed call.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
from mcp.client._transport import TransportStreams
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, get_default_environment
from mcp.client.streamable_http import streamable_http_client

from libs.common.config import ServerConfig

from .answer_limits import answer_cutoff, sse_event_limit
from .bounded_http import BoundedTransport
from .lean import LeanLink, LogFn, lean_http_transport
from .lean_stdio import StdioLink
from .stderr import stderr_to_log
from .stdio_pipe import stdio_pipe

__all__ = ["http_client", "open_transport", "stdio_parameters"]

# Without TCP_NODELAY a keep-alive request can stall ~40 ms (Nagle vs. delayed ACK) whenever
# headers and body leave in separate writes; measured on every call against uvicorn servers.
_SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
_LIMITS = httpx2.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=30.0)


def http_client(
    headers: dict[str, str] | None = None,
    timeout: httpx2.Timeout | None = None,
    auth: httpx2.Auth | None = None,
    on_unauthorized: Callable[[], None] | None = None,
    max_body: int | None = None,
) -> httpx2.AsyncClient:
    """The httpx2 client for HTTP and SSE upstreams (matches the SDK's `McpHttpClientFactory`).
    `on_unauthorized` hears of every HTTP 401: the SDK turns it into a generic error, and
    "needs credentials" is worth telling operators apart from "down". An answer body (not an event
    stream) longer than `max_body` fails its request (`bounded_http`)."""
    hooks: dict[str, list[Any]] = {}
    if on_unauthorized is not None:

        async def check(response: httpx2.Response) -> None:
            if response.status_code == 401:
                on_unauthorized()

        hooks["response"] = [check]
    transport: httpx2.AsyncBaseTransport = httpx2.AsyncHTTPTransport(socket_options=_SOCKET_OPTIONS, limits=_LIMITS)
    if max_body is not None:
        transport = BoundedTransport(transport, max_body)
    return httpx2.AsyncClient(
        headers=headers,
        timeout=timeout or httpx2.Timeout(30.0, read=None),
        auth=auth,
        transport=transport,
        event_hooks=hooks,
    )


def stdio_parameters(config: ServerConfig) -> StdioServerParameters:
    """The child gets the SDK's short list of safe variables (PATH, HOME, ...) plus the configured
    `env`, never the executor's whole environment, which holds Bastion's own settings."""
    assert config.command is not None
    return StdioServerParameters(
        command=config.command, args=list(config.args), env=get_default_environment() | config.env, cwd=config.cwd
    )


class _WatchedReadStream:
    """Delegates to the transport's read stream; reports end-of-stream once via `on_end`. With a
    stdio `lean` link, answers to its requests are handed to it instead of the SDK session."""

    def __init__(self, inner: Any, on_end: Callable[[], None], lean: StdioLink | None = None) -> None:
        self._inner = inner
        self._on_end = on_end
        self._lean = lean
        self._ended = False

    @property
    def last_context(self) -> Any:  # the dispatcher reads it duck-typed for HTTP transports
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        while True:
            try:
                message = await self._inner.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                self._end()
                raise
            if self._lean is None or not await self._lean.take(message):
                return message

    async def aclose(self) -> None:
        self._end()
        await self._inner.aclose()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            if self._lean is not None:
                self._lean.closed()
            self._on_end()

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _WatchedReadStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@asynccontextmanager
async def open_transport(
    config: ServerConfig,
    *,
    connect_timeout: float,
    on_end: Callable[[], None],
    name: str = "upstream",
    on_unauthorized: Callable[[], None] | None = None,
    auth: httpx2.Auth | None = None,
    on_lean: Callable[[LeanLink], None] | None = None,
    on_log: LogFn | None = None,
    max_result: int | None = None,
) -> AsyncIterator[TransportStreams]:
    """Enter the transport for `config`; `on_end` fires when the server side of it closes, and
    `on_unauthorized` on an HTTP 401. `auth` adds credentials to every HTTP request (OAuth access
    tokens, `oauth.py`). A stdio server's stderr goes to the log, each line prefixed with `name`. Every
    transport hands `on_lean` the link lean calls are sent on (an HTTP link over a client with an
    `auth` of its own sends nothing lean: the SDK's way signs each request; stdio and SSE links write
    through the SDK transport itself); that link gives log messages to `on_log` (what the session's
    logging callback is) itself. A lean call's answer too long for a result of `max_result` bytes is not
    read past `answer_limits.answer_cutoff(max_result)` and fails the call (`answer_limits.AnswerTooLarge`); on
    the SDK's own HTTP path the same cutoff bounds every answer body (`bounded_http`) and each
    server-sent event (`max_sse_event_size`; the SDK's HTTP+SSE transport keeps its own 1 MiB)."""
    cutoff = answer_cutoff(max_result) if max_result is not None else None
    if config.transport == "stdio":
        async with stderr_to_log(name) as pipe:
            piped = StdioLink(on_log=on_log, max_result=max_result) if on_lean is not None else None
            taker = piped.line if piped is not None else None
            overlong = piped.overlong if piped is not None else None
            params = stdio_parameters(config)
            opened = stdio_pipe(params, pipe.errlog, taker, cutoff, overlong)
            async with opened as ((read_stream, write_stream), send):
                pipe.spawned()
                if on_lean is not None and piped is not None:
                    piped.send_line = send
                    on_lean(piped)
                yield _WatchedReadStream(read_stream, on_end, piped), write_stream
        return
    transport: Any
    client: httpx2.AsyncClient | None = None
    if config.transport == "sse":
        assert config.url is not None
        transport = sse_client(
            config.url,
            headers=dict(config.headers),
            timeout=connect_timeout,
            # idle streams are normal (each call has its own timeout); the SDK hands this to httpx2.Timeout,
            # where None means no read timeout, though its annotation says float
            sse_read_timeout=None,  # type: ignore[arg-type]
            auth=auth,
            httpx_client_factory=lambda headers=None, timeout=None, auth=None: http_client(
                headers, timeout, auth, on_unauthorized, cutoff
            ),
        )
    else:
        assert config.url is not None
        timeout = httpx2.Timeout(connect_timeout, read=None)
        client = http_client(dict(config.headers), timeout, auth, on_unauthorized, cutoff)
        if on_lean is not None:
            try:
                lean = lean_http_transport(
                    config.url, client, dict(config.headers), on_unauthorized, on_log, max_result
                )
                async with lean as ((read_stream, write_stream), link):
                    on_lean(link)
                    yield _WatchedReadStream(read_stream, on_end), write_stream
            finally:
                await client.aclose()
            return
        transport = streamable_http_client(
            config.url, http_client=client, max_sse_event_size=sse_event_limit(max_result)
        )
    try:
        async with transport as (read_stream, write_stream):
            # SSE answers come back on the event stream, as stdio's on the pipe: the same lean link
            # writes through the transport's stream (its POST, auth and redirects stay the SDK's)
            sse = StdioLink(write_stream, on_log=on_log) if on_lean is not None and config.transport == "sse" else None
            if on_lean is not None and sse is not None:
                on_lean(sse)
            yield _WatchedReadStream(read_stream, on_end, sse), write_stream
    finally:
        if client is not None:
            await client.aclose()
