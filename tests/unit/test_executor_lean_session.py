"""A streamable-HTTP session's plain `tools/call` (`services.executor.upstreams.mcp.lean_session`).

Sent in one coroutine with the SDK's stamp worked out once per tool (`lean_plan`), against the real HTTP
server of `test_executor_lean`: what reaches the server is what the SDK's own stamp sends, call after
call, in either era; what the plan cannot repeat keeps the SDK's stamp per call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
import pytest
from aiohttp import web
from mcp.shared.message import SessionMessage
from mcp_types import LOG_LEVEL_META_KEY, PROTOCOL_VERSION_META_KEY

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import Caller, CallOutcome, ToolCall
from services.executor.upstreams.interface import CallContext, SessionHooks, UpstreamSettings
from services.executor.upstreams.mcp.lean_session import LeanMcpSession
from services.executor.upstreams.mcp.mcp_changes import ChangeListener
from tests.unit.test_executor_lean import RESULT, Link, Pipe, Server, answer, server

pytestmark = pytest.mark.unit

__all__ = ["server"]  # the fixture, shared with test_executor_lean

MODERN = types.DiscoverResult(supported_versions=["2026-07-28"], capabilities=types.ServerCapabilities())
HANDSHAKE = types.InitializeResult(
    protocol_version="2025-11-25",
    capabilities=types.ServerCapabilities(),
    server_info=types.Implementation(name="echo", version="1"),
)
REPLY = {**RESULT, "resultType": "complete"}
"""A result of either era: 2026-07-28 requires `resultType`, earlier versions' checks drop it."""
CALLER = Caller(key_id="k", key_name="k")
ECHO: dict[str, Any] = {"server": "echo", "tool": "echo", "name": "echo__echo", "arguments": {"text": "hi"}}
ECHO_PARAMS = {"name": "echo", "arguments": {"text": "hi"}}
STAMP_HEADERS = ("mcp-protocol-version", "mcp-method", "mcp-name", "mcp-session-id", "x-api-key")


async def _json_handler(request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
    return web.Response(body=answer(message["id"], result=REPLY), content_type="application/json")


async def _nothing(uri: str) -> None:
    return None


class Session:
    """An `LeanMcpSession` on a `Link` (its SDK session adopting `negotiated`), and the calls it makes."""

    def __init__(self, url: str, negotiated: types.InitializeResult | types.DiscoverResult) -> None:
        self.link = Link(url)
        self.link.session.adopt(negotiated)
        hooks = SessionHooks(UpstreamSettings(), None, lambda: None, lambda: None)  # type: ignore[arg-type]
        listener = ChangeListener("echo", lambda: None, _nothing)
        self.mcp = LeanMcpSession("echo", self.link.session, hooks, listener, self.link.link)

    async def call(self, meta: dict[str, Any] | None = None, deadline: float = 10.0) -> CallOutcome:
        call = ToolCall(caller=CALLER, meta=meta, timeout=deadline, **ECHO)
        loop = asyncio.get_running_loop()
        return await self.mcp.call_tool(call, CallContext(loop.time() + deadline, deadline))


@pytest.fixture(params=[MODERN, HANDSHAKE], ids=["modern", "handshake"])
async def session(server: tuple[Server, str], request: pytest.FixtureRequest) -> AsyncIterator[Session]:
    state, url = server

    state.handler = _json_handler
    made = Session(url, request.param)
    yield made
    await made.link.aclose()


def _sent(state: Server, index: int) -> tuple[dict[str, Any], dict[str, str]]:
    headers, message = state.received[index]
    lowered = {name.lower(): value for name, value in headers.items()}
    return message["params"], {name: lowered[name] for name in STAMP_HEADERS if name in lowered}


@pytest.mark.parametrize(
    "meta",
    [None, {"trace": "t-1"}, {PROTOCOL_VERSION_META_KEY: "1999-01-01"}, {LOG_LEVEL_META_KEY: "error"}],
    ids=["none", "own", "overridden", "own-default"],
)
async def test_a_plain_call_sends_what_the_sdks_stamp_sends(
    server: tuple[Server, str], session: Session, meta: dict[str, Any] | None
) -> None:
    state, _ = server
    outcomes = [await session.call(meta) for _ in range(3)]  # the first plans the tool and opens a connection
    params = {"name": "echo", "arguments": {"text": "hi"}, **({"_meta": meta} if meta else {})}
    result = await session.link.link.request(session.link.session, "tools/call", params)  # the SDK's stamp
    assert [outcome.result for outcome in outcomes] == [result, result, result]
    assert len(state.received) == 4
    sdk = _sent(state, 3)
    assert [_sent(state, index) for index in range(3)] == [sdk, sdk, sdk]
    assert sdk[1]["mcp-protocol-version"] == session.link.session.protocol_version
    assert session.link.link.sent == 4 and session.link.http.connections == 1


async def test_a_session_log_level_is_a_default_the_call_may_override(server: tuple[Server, str]) -> None:
    state, url = server

    state.handler = _json_handler
    made = Session(url, MODERN)
    made.link.session._log_level = "debug"  # what `logging/setLevel` keeps for the next negotiation
    made.link.session.adopt(MODERN)
    try:
        await made.call()
        await made.call({LOG_LEVEL_META_KEY: "error"})
    finally:
        await made.link.aclose()
    assert [_sent(state, index)[0]["_meta"][LOG_LEVEL_META_KEY] for index in range(2)] == ["debug", "error"]


async def test_a_tool_with_param_headers_is_stamped_by_the_sdk_each_call(
    server: tuple[Server, str], session: Session
) -> None:
    state, _ = server
    session.link.session._x_mcp_header_maps["echo"] = {("text",): "Text"}  # as its listed schema declares
    await session.call()
    headers = {name.lower(): value for name, value in state.received[0][0].items()}
    assert ("mcp-param-text" in headers) is (session.link.session.protocol_version == "2026-07-28")


async def test_a_renegotiated_session_is_stamped_for_its_new_era(server: tuple[Server, str]) -> None:
    state, url = server

    state.handler = _json_handler
    made = Session(url, HANDSHAKE)
    try:
        await made.call()
        made.link.session.adopt(MODERN)
        await made.call()
    finally:
        await made.link.aclose()
    assert "_meta" not in _sent(state, 0)[0]
    assert _sent(state, 1)[0]["_meta"][PROTOCOL_VERSION_META_KEY] == "2026-07-28"


async def test_an_sse_answer_on_a_reused_connection_hands_over_the_rest(server: tuple[Server, str]) -> None:
    state, url = server

    async def handler(request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        note = b'{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}'
        await response.write(b"event: message\ndata: " + note + b"\n\n")
        await response.write(b"event: message\ndata: " + answer(message["id"], result=RESULT) + b"\n\n")
        await response.write_eof()
        return response

    made = Session(url, HANDSHAKE)
    try:
        state.handler = _json_handler
        await made.call()  # leaves an idle connection: the next call takes it
        state.handler = handler
        outcome = await made.call()
        handed = await asyncio.wait_for(made.link.inbound.receive(), 5)
    finally:
        await made.link.aclose()
    assert outcome.result == RESULT
    assert isinstance(handed, SessionMessage)
    assert handed.message.method == "notifications/tools/list_changed"  # type: ignore[union-attr]


async def test_a_call_past_its_deadline_times_out_and_tells_the_server(server: tuple[Server, str]) -> None:
    state, url = server

    released = asyncio.Event()

    async def slow(request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        await released.wait()
        return web.Response(status=503)

    made = Session(url, HANDSHAKE)
    try:
        state.handler = _json_handler
        await made.call()
        state.handler = slow
        outcome = await made.call(deadline=0.2)
        told = await asyncio.wait_for(made.link.outbound.receive(), 5)
    finally:
        released.set()
        await made.link.aclose()
    assert outcome.error is not None and outcome.error.kind is ErrorKind.UPSTREAM_TIMEOUT
    assert outcome.execution == "may_have_run"
    assert told.message.method == "notifications/cancelled"  # type: ignore[union-attr]
    assert made.mcp._deadlines.timers == 0


@pytest.mark.parametrize(
    ("body", "kind", "code"),
    [
        ({"error": {"code": -32602, "message": "no such tool"}}, ErrorKind.UPSTREAM_ERROR, -32602),
        ({"result": {"content": "not a list"}}, ErrorKind.UPSTREAM_ERROR, None),
        ({"result": [1, 2]}, ErrorKind.UPSTREAM_ERROR, None),
    ],
    ids=["error", "breaks-the-schema", "not-an-object"],
)
async def test_an_answer_that_is_no_good_result_fails_the_call_as_the_sdk_would(
    server: tuple[Server, str], session: Session, body: dict[str, Any], kind: ErrorKind, code: int | None
) -> None:
    state, _ = server

    async def handler(request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        return web.Response(body=answer(message["id"], **body), content_type="application/json")

    await session.call()  # an idle connection: the answer comes on the plain path's own read
    state.handler = handler
    outcome = await session.call()
    assert outcome.result is None and outcome.error is not None
    assert outcome.error.kind is kind and outcome.execution == "ran"
    if code is not None:
        assert outcome.error.code == code and outcome.error.message == "no such tool"


@pytest.mark.parametrize("negotiated", [MODERN, HANDSHAKE], ids=["modern", "handshake"])
async def test_a_plain_call_on_a_pipe_sends_what_the_sdks_stamp_sends(
    negotiated: types.InitializeResult | types.DiscoverResult,
) -> None:
    pipe = Pipe()
    pipe.session.adopt(negotiated)
    hooks = SessionHooks(UpstreamSettings(), None, lambda: None, lambda: None)  # type: ignore[arg-type]
    lean = LeanMcpSession("echo", pipe.session, hooks, ChangeListener("echo", lambda: None, _nothing), pipe.link)
    call = ToolCall(caller=CALLER, meta={"trace": "t-1"}, timeout=10, **ECHO)
    loop = asyncio.get_running_loop()
    sent: list[dict[str, Any]] = []
    try:
        for send in (
            lambda: lean.call_tool(call, CallContext(loop.time() + 10, 10)),
            lambda: pipe.link.request(pipe.session, "tools/call", {**ECHO_PARAMS, "_meta": {"trace": "t-1"}}),
        ):
            task = asyncio.ensure_future(send())
            written = await asyncio.wait_for(pipe.written.receive(), 5)
            sent.append(written.message.params)  # type: ignore[union-attr]
            assert await pipe.answer(str(written.message.id), REPLY)  # type: ignore[union-attr]
            done = await task
            sent.append(done.result if isinstance(done, CallOutcome) else done)
    finally:
        await pipe.aclose()
    assert sent[0] == sent[2] and sent[1] == sent[3]  # the request's params, then its result
    assert len(lean._plans) == 1 and pipe.link.sent == 2
