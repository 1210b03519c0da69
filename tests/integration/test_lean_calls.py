"""The lean `tools/call` send (`services.executor.upstreams.mcp.lean`, `...mcp.lean_stdio`) against the
official SDK's servers over streamable HTTP, stdio and HTTP+SSE, in both protocol eras: the same calls answer
exactly as they do through the SDK's client."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.msg import Msg

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.messages import CallOutcome, ClientReply, StreamEvent, new_id
from libs.common.settings import ExecutorSettings
from services.executor.service import ExecutorService
from tests.integration.test_executor import ECHO, ROOT, Harness, harness, http_upstream, stdio
from tests.support.egress import LOOPBACK_UPSTREAMS

pytestmark = pytest.mark.integration
__all__ = ["harness"]  # the fixture, re-exported for pytest

INTERACTIVE = str(ROOT / "tests" / "support" / "interactive_server.py")

CALLS: list[tuple[str, dict[str, Any]]] = [
    ("echo", {"text": "héllo ✓"}),
    ("add", {"a": 2, "b": 40}),
    ("fail", {"message": "broken on purpose"}),  # a tool error: a result with isError
    ("add", {"a": "two", "b": 1}),  # refused by the executor's schema check before any send
    ("sleep", {"seconds": 5}),  # past the call's deadline
]


@pytest.fixture
async def executor(nats_url: str) -> AsyncIterator[ExecutorService]:
    settings = ExecutorSettings(
        nats_url=nats_url, connect_timeout=15.0, reconnect_max_backoff=1.0, egress=LOOPBACK_UPSTREAMS
    )
    async with ExecutorService(settings) as service:
        yield service


def comparable(outcome: CallOutcome) -> tuple[Any, ...]:
    error = outcome.error
    # a timeout names the budget left when the call was sent, which a busy machine shaves a millisecond off
    message = error and re.sub(r"within [0-9.]+ seconds", "within N seconds", error.message)
    return (outcome.result, error and (error.kind, error.code, message), outcome.execution)


class HttpUpstreams:
    """The example servers over HTTP and SSE, each started when a test first asks for it and kept for
    the module: every test opens sessions of its own, and the servers keep nothing between them."""

    def __init__(self) -> None:
        self._running = contextlib.AsyncExitStack()
        self._urls: dict[tuple[str, str], str] = {}

    async def url(self, script: str, transport: str) -> str:
        if (script, transport) not in self._urls:
            self._urls[script, transport] = await self._running.enter_async_context(http_upstream(script, transport))
        return self._urls[script, transport]

    async def close(self) -> None:
        await self._running.aclose()


@pytest.fixture(scope="module")
async def upstreams() -> AsyncIterator[HttpUpstreams]:
    started = HttpUpstreams()
    try:
        yield started
    finally:
        await started.close()


async def upstream_config(upstreams: HttpUpstreams, script: str, transport: str, protocol: str) -> ServerConfig:
    if transport == "stdio":
        return stdio(script, protocol=protocol)
    url = await upstreams.url(script, transport)
    return ServerConfig(url=url, protocol=protocol, type=transport)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["http", "stdio", "sse"])
@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_lean_and_sdk_sends_answer_alike(
    harness: Harness, executor: ExecutorService, upstreams: HttpUpstreams, protocol: str, transport: str
) -> None:
    config = await upstream_config(upstreams, ECHO, transport, protocol)
    await harness.configure("echo", config)
    await harness.wait_status("echo", "ready")
    upstream = executor.upstreams["echo"]
    answers: dict[bool, list[tuple[Any, ...]]] = {}
    for lean in (True, False):
        upstream.lean_calls = lean
        answers[lean] = [
            comparable(await harness.call("echo", tool, arguments, deadline=1.0 if tool == "sleep" else 20.0))
            for tool, arguments in CALLS
        ]
    assert answers[True] == answers[False]
    assert answers[True][0][0]["content"][0]["text"] == "héllo ✓"
    link = upstream.session.lean_link
    assert link is not None and link.usable
    assert link.sent == 4  # every call that reached the upstream went the lean way (the refusal did not)
    # the session is still good after the abandoned call
    outcome = await harness.call("echo", "echo", {"text": "after"})
    assert outcome.result is not None and outcome.result["content"][0]["text"] == "after"


@pytest.mark.parametrize("transport", ["http", "stdio"])
async def test_a_server_request_on_the_calls_stream_reaches_the_agent(
    harness: Harness, executor: ExecutorService, upstreams: HttpUpstreams, transport: str
) -> None:
    """Handshake era: the server asks the agent's model (sampling) during a lean call (on the SSE
    stream of the lean POST, or on the pipe); the request is handed to the SDK session, which asks
    the agent (a NATS request on the call's stream subject) and sends the answer back, and the call
    completes with it."""
    stream = f"test.stream.{new_id()}"
    asked: list[StreamEvent] = []

    async def agent(msg: Msg) -> None:
        event = StreamEvent.model_validate_json(msg.data)
        if event.method == "sampling/createMessage":
            asked.append(event)
            content = {"type": "text", "text": "forty-two"}
            reply = ClientReply(result={"role": "assistant", "content": content, "model": "test"})
            await msg.respond(reply.model_dump_json().encode())

    subscription = await harness.nc.subscribe(stream, cb=agent)
    try:
        config = await upstream_config(upstreams, INTERACTIVE, transport, "legacy")
        await harness.configure("interactive", config)
        await harness.wait_status("interactive", "ready")
        asking = {"prompt": "the answer?"}
        outcome = await harness.call("interactive", "ask_llm", asking, stream=stream, client=["sampling"])
        assert outcome.error is None, outcome.error
        result = outcome.result_value()
        assert result is not None and result["content"][0]["text"] == "model said: forty-two"
        assert len(asked) == 1 and asked[0].params is not None
        link = executor.upstreams["interactive"].session.lean_link
        assert link is not None and link.sent == 1
    finally:
        await subscription.unsubscribe()
