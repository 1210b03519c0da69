"""The executor's lean `tools/call` send (`services.executor.upstreams.mcp.lean`) against a real HTTP server
(aiohttp.web on a free port) answering the ways a streamable-HTTP MCP server may: JSON, SSE with
other messages before the answer, errors at HTTP level, redirects; and the stdio link
(`services.executor.upstreams.mcp.lean_stdio`) on the in-memory streams the SDK's stdio transport hands it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx2
import mcp_types as types
import orjson
import pytest
from aiohttp import web
from mcp.client.session import ClientSession
from mcp.client.streamable_http import StreamableHTTPTransport
from mcp.shared._context_streams import create_context_streams
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
)
from pydantic import ValidationError

from libs.common.contracts import json_codec
from libs.common.contracts.errors import ErrorKind
from services.executor.answer_limits import ANSWER_ENVELOPE, AnswerTooLarge
from services.executor.error_mapping import error_from_exception
from services.executor.upstreams.mcp.http1 import HttpPool
from services.executor.upstreams.mcp.lean import HttpLink, Redirected, _proxied, lean_http_transport
from services.executor.upstreams.mcp.lean_results import checked
from services.executor.upstreams.mcp.lean_stdio import StdioLink
from tests.support.egress import LOOPBACK_RULES
from tests.support.polling import poll_until

pytestmark = pytest.mark.unit

Handler = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]
RESULT = {"content": [{"type": "text", "text": "hi"}], "isError": False}


def answer(request_id: Any, **body: Any) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, **body})


class Server:
    """One aiohttp app whose POST handler each test sets; records what it received."""

    def __init__(self) -> None:
        self.handler: Handler | None = None
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []

    async def post(self, request: web.Request) -> web.StreamResponse:
        message = json_codec.loads(await request.read())  # integers beyond 64 bits exact
        self.received.append((dict(request.headers), message))
        assert self.handler is not None
        return await self.handler(request, message)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    state = Server()
    app = web.Application(client_max_size=16 * 1024 * 1024)  # the default 1 MiB would refuse large arguments
    app.router.add_post("/mcp", state.post)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield state, f"http://127.0.0.1:{port}/mcp"
    finally:
        await runner.cleanup()


class Link:
    """An HttpLink, the SDK session it stamps with, and the session's read side."""

    def __init__(self, url: str) -> None:
        self.inbound_writer, self.inbound = create_context_streams[SessionMessage | Exception](8)
        self.outbound_writer, self.outbound = create_context_streams[SessionMessage](8)
        self.session = ClientSession(self.inbound, self.outbound_writer)
        self.transport = StreamableHTTPTransport(url)
        self.transport.session_id = "session-1"
        self.unauthorized = 0
        self.http = HttpPool(url, {"x-api-key": "configured"})
        self.link = HttpLink(self.http, self.transport, self.inbound_writer, self._unauthorized)

    def _unauthorized(self) -> None:
        self.unauthorized += 1

    async def call(self, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        params = {"name": "echo", "arguments": arguments or {"text": "hi"}}
        return await self.link.request(self.session, "tools/call", params)

    async def aclose(self) -> None:
        await self.http.close()
        for stream in (self.inbound_writer, self.inbound, self.outbound_writer, self.outbound):
            await stream.aclose()


@pytest.fixture
async def link(server: tuple[Server, str]) -> AsyncIterator[Link]:
    made = Link(server[1])
    yield made
    await made.aclose()


async def test_json_answer_is_the_result_and_the_request_carries_the_session(
    server: tuple[Server, str], link: Link
) -> None:
    state, _ = server

    async def handler(request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        return web.Response(body=answer(message["id"], result=RESULT), content_type="application/json")

    state.handler = handler
    arguments = {"text": "hi", "nested": {"n": 1}}
    assert await link.call(arguments) == RESULT
    headers, message = state.received[0]
    assert headers["mcp-session-id"] == "session-1" and headers["x-api-key"] == "configured"
    assert message["method"] == "tools/call" and message["params"]["arguments"] == arguments
    assert isinstance(message["id"], str)  # never one of the SDK's integer ids
    assert link.link.sent == 1


async def test_integers_beyond_64_bits_go_and_come_back_exactly(server: tuple[Server, str], link: Link) -> None:
    state, _ = server
    huge = 2**64 + 5

    async def handler(request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        total = sum(message["params"]["arguments"]["n"])
        result = {"content": [{"type": "text", "text": str(total)}], "structuredContent": {"total": total}}
        body = json_codec.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result})
        return web.Response(body=body, content_type="application/json")

    state.handler = handler
    result = await link.call({"n": [huge, 1]})
    assert state.received[0][1]["params"]["arguments"]["n"] == [huge, 1]  # not 1.8446744073709552e+19
    assert result["structuredContent"] == {"total": huge + 1}


async def test_arguments_of_megabytes_are_sent_whole(server: tuple[Server, str], link: Link) -> None:
    state, _ = server

    async def handler(request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        size = len(message["params"]["arguments"]["text"])
        result = {"content": [{"type": "text", "text": str(size)}], "isError": False}
        return web.Response(body=answer(message["id"], result=result), content_type="application/json")

    state.handler = handler
    result = await link.call({"text": "x" * 3_000_000})
    assert result["content"][0]["text"] == "3000000"


async def test_sse_answer_hands_other_messages_to_the_sdk_session(server: tuple[Server, str], link: Link) -> None:
    state, _ = server

    async def handler(request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        log = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "working"}}
        await response.write(b"id: 1\ndata:\n\n")  # a priming event: an id, no data
        await response.write(b": a comment\r\nevent: message\r\ndata: " + orjson.dumps(log) + b"\r\n\r\n")
        text = answer(message["id"], result=RESULT)
        half = len(text) // 2  # an event split across writes
        await response.write(b"data: " + text[:half])
        await response.write(text[half:] + b"\n\n")
        return response

    state.handler = handler
    assert await link.call() == RESULT
    handed = await link.inbound.receive()
    assert isinstance(handed, SessionMessage) and isinstance(handed.message, JSONRPCNotification)
    assert handed.message.method == "notifications/message"


async def test_sse_ending_without_an_answer_is_a_closed_connection(server: tuple[Server, str], link: Link) -> None:
    state, _ = server

    async def handler(request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"id: 7\ndata:\n\n")
        return response

    state.handler = handler
    with pytest.raises(MCPError) as caught:
        await link.call()
    assert caught.value.code == CONNECTION_CLOSED


@pytest.mark.parametrize(
    ("status", "body", "content_type", "code", "message"),
    [
        (400, {"error": {"code": INVALID_PARAMS, "message": "bad"}}, "application/json", INVALID_PARAMS, "bad"),
        (404, None, "text/plain", INVALID_REQUEST, "Session terminated"),
        (500, None, "text/plain", INTERNAL_ERROR, "Server returned an error response"),
        (202, None, "text/plain", INVALID_REQUEST, "server answered a request with 202 Accepted"),
        (200, None, "text/html", INVALID_REQUEST, "Unexpected content type: text/html"),
    ],
)
async def test_http_level_answers_become_the_errors_the_sdk_reports(
    server: tuple[Server, str],
    link: Link,
    status: int,
    body: dict[str, Any] | None,
    content_type: str,
    code: int,
    message: str,
) -> None:
    state, _ = server

    async def handler(request: web.Request, received: dict[str, Any]) -> web.StreamResponse:
        payload = answer(received["id"], **body) if body is not None else b"nope"
        return web.Response(status=status, body=payload, content_type=content_type)

    state.handler = handler
    with pytest.raises(MCPError) as caught:
        await link.call()
    assert (caught.value.code, caught.value.message) == (code, message)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_answer_too_large_for_the_result_limit_fails_as_result_too_large(
    server: tuple[Server, str], link: Link, declared: bool
) -> None:
    state, _ = server
    body_text = "x" * (ANSWER_ENVELOPE + 300_000)

    async def handler(request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        body = answer(message["id"], result={"content": [{"type": "text", "text": body_text}], "isError": False})
        if declared:
            return web.Response(body=body, content_type="application/json")
        response = web.StreamResponse(headers={"content-type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(body)
        return response

    state.handler = handler
    link.link.max_result = 100_000
    with pytest.raises(AnswerTooLarge) as caught:
        await link.call()
    assert caught.value.limit == 100_000
    assert (caught.value.size is not None) is declared  # a declared size is named without reading it
    error = error_from_exception(caught.value, server="big", timeout=30)
    assert error.kind is ErrorKind.RESULT_TOO_LARGE
    assert "100,000 bytes" in error.message and "BASTION_MAX_RESULT_BYTES" in error.message
    assert "did run" in error.message
    link.link.max_result = None
    state.handler = lambda request, message: _json(answer(message["id"], result=RESULT))
    assert await link.call() == RESULT  # and the link goes on


async def _json(body: bytes) -> web.StreamResponse:
    return web.Response(body=body, content_type="application/json")


async def test_json_rpc_error_answer_is_an_mcp_error_with_its_data(server: tuple[Server, str], link: Link) -> None:
    state, _ = server

    async def handler(request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        error = {"code": -32001, "message": "quota", "data": {"left": 0}}
        return web.Response(body=answer(message["id"], error=error), content_type="application/json")

    state.handler = handler
    with pytest.raises(MCPError) as caught:
        await link.call()
    assert (caught.value.code, caught.value.message, caught.value.data) == (-32001, "quota", {"left": 0})


async def test_a_result_breaking_the_negotiated_schema_fails_as_in_the_sdk(
    server: tuple[Server, str], link: Link
) -> None:
    """The lean path checks a result against the negotiated version's schema, as
    `ClientSession.send_request` does; what passes comes back as the upstream sent it."""
    state, _ = server
    results = iter([{"content": "not a list"}, {**RESULT, "x-vendor": {"kept": True}}])

    async def handler(request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        return web.Response(body=answer(message["id"], result=next(results)), content_type="application/json")

    state.handler = handler
    with pytest.raises(ValidationError, match="content"):
        await link.call()
    assert await link.call() == {**RESULT, "x-vendor": {"kept": True}}


async def test_a_redirect_sends_nothing_and_switches_the_link_off(server: tuple[Server, str], link: Link) -> None:
    state, url = server

    async def handler(request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        return web.Response(status=307, headers={"location": url + "/elsewhere"})

    state.handler = handler
    with pytest.raises(Redirected):
        await link.call()
    assert not link.link.usable


async def test_unauthorized_is_reported(server: tuple[Server, str], link: Link) -> None:
    state, _ = server

    async def handler(request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        return web.Response(status=401, text="who are you")

    state.handler = handler
    with pytest.raises(MCPError):
        await link.call()
    assert link.unauthorized == 1


async def test_an_abandoned_call_tells_the_server(server: tuple[Server, str], link: Link) -> None:
    """Cancelled mid-call (the deadline, or the agent): the POST is dropped and, for a handshake-era
    session, `notifications/cancelled` names the request (the SDK's session sends it)."""
    state, _ = server
    release = asyncio.Event()

    async def handler(request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), 30)
        return web.Response(body=answer(message["id"], result=RESULT), content_type="application/json")

    state.handler = handler
    call = asyncio.create_task(link.call())
    await poll_until(lambda: bool(state.received), "the server to receive the call")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    sent = await asyncio.wait_for(link.outbound.receive(), 30)
    release.set()
    assert isinstance(sent.message, JSONRPCNotification) and sent.message.method == "notifications/cancelled"
    assert sent.message.params is not None
    assert sent.message.params["requestId"] == state.received[0][1]["id"]


def test_upstreams_behind_an_environment_proxy_keep_the_sdk_path(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert not _proxied("http://127.0.0.1:8000/mcp")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.corp")
    assert _proxied("https://api.example.com/mcp")
    assert not _proxied("http://api.example.com/mcp")  # no proxy for plain HTTP
    assert not _proxied("https://mcp.corp/mcp")  # exempted


@pytest.mark.parametrize(("auth", "usable"), [(None, True), (httpx2.BasicAuth("user", "secret"), False)])
async def test_clients_that_sign_their_requests_keep_the_sdk_path(
    server: tuple[Server, str], auth: httpx2.Auth | None, usable: bool
) -> None:
    """An httpx2 `Auth` on the session's client (OAuth toward the upstream) signs only what the SDK sends."""
    async with (
        httpx2.AsyncClient(auth=auth) as client,
        lean_http_transport(server[1], client, {}, egress=LOOPBACK_RULES) as (_, link),
    ):
        assert link.usable is usable


class Pipe:
    """A `StdioLink` on in-memory streams standing for the SDK stdio transport's: what the link
    writes arrives in `written`; `answer` plays the server's line coming back through the link."""

    def __init__(self) -> None:
        self.inbound_writer, self.inbound = create_context_streams[SessionMessage | Exception](8)
        self.outbound_writer, self.written = create_context_streams[SessionMessage](8)
        self.session = ClientSession(self.inbound, self.outbound_writer)
        self.link = StdioLink(self.outbound_writer)

    async def answer(self, request_id: str, result: dict[str, Any]) -> bool:
        response = JSONRPCResponse(jsonrpc="2.0", id=request_id, result=result)
        return await self.link.take(SessionMessage(response))

    async def aclose(self) -> None:
        for stream in (self.inbound_writer, self.inbound, self.outbound_writer, self.written):
            await stream.aclose()


@pytest.fixture
async def pipe() -> AsyncIterator[Pipe]:
    made = Pipe()
    yield made
    await made.aclose()


async def test_a_stdio_call_is_one_message_and_its_answer_is_taken_from_the_session(pipe: Pipe) -> None:
    call = asyncio.create_task(pipe.link.request(pipe.session, "tools/call", {"name": "echo", "arguments": {}}))
    sent = await asyncio.wait_for(pipe.written.receive(), 30)
    assert isinstance(sent.message, JSONRPCRequest) and sent.message.method == "tools/call"
    assert await pipe.answer(str(sent.message.id), RESULT)  # taken: the SDK session never sees it
    assert await call == RESULT
    assert not await pipe.answer(str(sent.message.id), RESULT)  # a second answer is not ours any more


async def test_a_stdio_call_abandoned_tells_the_server_and_drops_its_late_answer(pipe: Pipe) -> None:
    call = asyncio.create_task(pipe.link.request(pipe.session, "tools/call", {"name": "echo", "arguments": {}}))
    sent = await asyncio.wait_for(pipe.written.receive(), 30)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    cancelled = await asyncio.wait_for(pipe.written.receive(), 30)
    assert isinstance(cancelled.message, JSONRPCNotification) and cancelled.message.method == "notifications/cancelled"
    assert await pipe.answer(str(sent.message.id), RESULT)  # the late answer is dropped, not handed to the session


async def test_a_stdio_pipe_that_ends_fails_the_waiting_call_as_the_sdk_would(pipe: Pipe) -> None:
    call = asyncio.create_task(pipe.link.request(pipe.session, "tools/call", {"name": "echo", "arguments": {}}))
    await asyncio.wait_for(pipe.written.receive(), 30)
    pipe.link.closed()
    with pytest.raises(MCPError) as caught:
        await call
    assert caught.value.code == CONNECTION_CLOSED
    with pytest.raises(MCPError):  # and nothing more is sent on it
        await pipe.link.request(pipe.session, "tools/call", {"name": "echo", "arguments": {}})


async def test_log_messages_on_a_calls_stream_are_delivered_before_its_answer(server: tuple[Server, str]) -> None:
    """With `on_log` (what the executor's session uses as its logging callback), a log message met on
    the call's SSE stream is delivered before the call returns: the outcome then counts it, and the
    agent gets it before the result (a hand-over to the session could be handled after)."""
    state, url = server
    logged: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logged.append(params)

    async def handler(request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        log = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "working"}}
        await response.write(b"data: " + orjson.dumps(log) + b"\n\n")
        await response.write(b"data: " + answer(message["id"], result=RESULT) + b"\n\n")
        return response

    state.handler = handler
    made = Link(url)
    made.link.on_log = on_log
    try:
        assert await made.call() == RESULT
        assert [(entry.level, entry.data) for entry in logged] == [("info", "working")]
        assert made.inbound._inner.statistics().current_buffer_used == 0  # nothing handed to the SDK session
    finally:
        await made.aclose()


async def test_a_log_line_on_the_pipe_goes_to_on_log_not_the_session(pipe: Pipe) -> None:
    logged: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logged.append(params)

    pipe.link.on_log = on_log
    line = JSONRPCNotification(jsonrpc="2.0", method="notifications/message", params={"level": "debug", "data": 7})
    assert await pipe.link.take(SessionMessage(line))
    assert [(entry.level, entry.data) for entry in logged] == [("debug", 7)]


def test_a_results_check_floors_a_negative_ttl_as_the_sdk_does() -> None:
    listed = {"tools": [], "cacheScope": "private", "resultType": "complete"}
    assert checked("tools/list", "2026-07-28", {**listed, "ttlMs": -5}) == {**listed, "ttlMs": 0}
    assert checked("tools/list", "2026-07-28", {**listed, "ttlMs": 60_000}) == {**listed, "ttlMs": 60_000}
    assert checked("tools/list", "2025-11-25", {"tools": [], "ttlMs": -5}) == {"tools": []}  # a later revision's
    for broken in (dict(listed), {**listed, "ttlMs": "soon"}):  # 2026-07-28 requires a number
        with pytest.raises(ValidationError):
            checked("tools/list", "2026-07-28", broken)
