"""Ingress's request cycle: `receive()` as uvicorn's answers it (whole bodies, bodies in pieces,
disconnects, `Expect: 100-continue`, pipelined requests), with no Event made for a body that came
with its head."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from services.ingress.mcp_edge.answers import respond
from tests.unit.test_ingress_response_writes import _served, connected

pytestmark = pytest.mark.unit

_HEAD = b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: %d\r\n%s\r\n"


def _recording(received: list[dict[str, Any]], reads: int = 1, answer: bool = True) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        for _ in range(reads):
            received.append(await receive())
        if answer:
            await respond(send, {"path": scope["path"]}, 200, False, None)

    return app


async def test_a_body_that_came_with_its_head_is_received_at_once_without_an_event() -> None:
    received: list[dict[str, Any]] = []
    protocol, socket = await _served(_HEAD % (2, b"") + b"{}", _recording(received))
    assert received == [{"type": "http.request", "body": b"{}", "more_body": False}]
    assert protocol.cycle.message_event.event is None  # nothing ever waited
    assert socket.calls[0][1].startswith(b"HTTP/1.1 200 OK")


async def test_a_chunked_bodys_trailer_fields_never_reach_the_request_and_are_not_kept() -> None:
    # llhttp hands trailer fields to the same callback as the head's; appended to the request's
    # headers after the app read them, two megabytes of them were held for one request
    seen: dict[str, Any] = {}
    answered = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive())["more_body"]:
            pass
        seen["headers"] = list(scope["headers"])
        await respond(send, {}, 200, False, None)
        answered.set()

    head = b"POST /mcp HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ntransfer-encoding: chunked\r\n\r\n"
    protocol, _socket = connected(app)
    protocol.data_received(head + b"2\r\n{}\r\n0\r\n")
    for i in range(2000):
        protocol.data_received(b"x-trailer-%d: " % i + b"v" * 1000 + b"\r\n")
    protocol.data_received(b"authorization: Bearer smuggled\r\n\r\n")
    await asyncio.wait_for(answered.wait(), 5)
    assert seen["headers"] == [(b"host", b"x"), (b"expect", b"100-continue"), (b"transfer-encoding", b"chunked")]
    assert protocol.headers == seen["headers"]  # nothing gathered beside the request's either


class Reader:
    """An app that hands its `receive` to the test and answers once the test says so."""

    def __init__(self) -> None:
        self.receive: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.answer = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.receive.set_result(receive)
        await self.answer.wait()
        await respond(send, {}, 200, False, None)


async def _reading(request: bytes) -> tuple[Any, Any, Any, Reader]:
    app = Reader()
    protocol, socket = connected(app)
    protocol.data_received(request)
    receive = await asyncio.wait_for(app.receive, 5)
    return protocol, socket, receive, app


async def test_a_body_in_pieces_is_received_piece_by_piece() -> None:
    protocol, _socket, receive, app = await _reading(_HEAD % (5, b"") + b"ab")
    assert await receive() == {"type": "http.request", "body": b"ab", "more_body": True}
    rest = asyncio.ensure_future(receive())
    await asyncio.sleep(0)
    assert not rest.done()  # waits for the rest
    protocol.data_received(b"cde")
    assert await asyncio.wait_for(rest, 5) == {"type": "http.request", "body": b"cde", "more_body": False}
    app.answer.set()
    await asyncio.gather(*protocol.tasks)


@pytest.mark.parametrize("end", ["lost", "answered"])
async def test_a_receive_after_the_body_waits_for_the_disconnect_or_the_answer(end: str) -> None:
    protocol, _socket, receive, app = await _reading(_HEAD % (2, b"") + b"{}")
    assert await receive() == {"type": "http.request", "body": b"{}", "more_body": False}
    after = asyncio.ensure_future(receive())
    await asyncio.sleep(0)
    assert not after.done()  # the body was taken: nothing new until the connection ends or is answered
    if end == "lost":
        protocol.connection_lost(None)
    app.answer.set()
    assert await asyncio.wait_for(after, 5) == {"type": "http.disconnect"}
    assert await receive() == {"type": "http.disconnect"}
    await asyncio.gather(*protocol.tasks)


async def test_expect_100_continue_is_answered_before_the_body_is_read() -> None:
    protocol, socket, receive, app = await _reading(_HEAD % (2, b"expect: 100-continue\r\n"))
    assert socket.calls == []
    reading = asyncio.ensure_future(receive())
    await asyncio.sleep(0)
    protocol.data_received(b"{}")
    assert await asyncio.wait_for(reading, 5) == {"type": "http.request", "body": b"{}", "more_body": False}
    assert socket.calls == [("write", b"HTTP/1.1 100 Continue\r\n\r\n")]
    app.answer.set()
    await asyncio.gather(*protocol.tasks)


async def test_pipelined_requests_are_answered_in_order() -> None:
    received: list[dict[str, Any]] = []
    one = _HEAD.replace(b"/mcp", b"/one") % (3, b"") + b"one"
    two = _HEAD.replace(b"/mcp", b"/two") % (3, b"") + b"two"
    protocol, socket = await _served(one + two, _recording(received))
    await asyncio.gather(*protocol.tasks)  # the second starts once the first has answered
    await asyncio.sleep(0)
    assert [event["body"] for event in received] == [b"one", b"two"]
    answers = b"".join(data for call, data in socket.calls if call.startswith("write"))
    assert answers.index(b'{"path":"/one"}') < answers.index(b'{"path":"/two"}')


def _answering(name: str, served: list[str]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        served.append(f"{name} {scope['path']}")
        await receive()
        await respond(send, {}, 200, False, None)

    return app


@pytest.mark.parametrize("wrapped", [False, True])
async def test_a_direct_path_skips_the_server_app_unless_uvicorn_wrapped_it(wrapped: bool) -> None:
    """`/mcp` goes straight to its endpoint; when uvicorn wraps the app (here its proxy-headers
    middleware), every path goes through the wrapper as uvicorn would send it."""
    served: list[str] = []
    protocol, _socket = connected(
        _answering("app", served), {"/mcp": _answering("endpoint", served)}, proxy_headers=wrapped
    )
    for path in (b"/mcp", b"/other", b"/mcp/"):
        protocol.data_received(_HEAD.replace(b"/mcp", path) % (2, b"") + b"{}")
        await asyncio.gather(*protocol.tasks)
    first = "app" if wrapped else "endpoint"
    assert served == [f"{first} /mcp", "app /other", "app /mcp/"]


async def test_the_request_cycle_has_every_field_uvicorn_gives_it_with_the_same_values() -> None:
    """Ingress builds its request cycle without calling uvicorn's `__init__`: a field uvicorn adds or
    starts differently fails here."""
    protocol, _socket, _receive, app = await _reading(_HEAD % (2, b"expect: 100-continue\r\n"))
    ours = protocol.cycle
    p = protocol
    connection = (p.transport, p.flow, p.logger, p.access_logger, p.access_log, p.server_state.default_headers)
    uvicorns = RequestResponseCycle(ours.scope, *connection, ours.message_event, True, True, p.on_response_complete)
    assert vars(ours) == vars(uvicorns)
    app.answer.set()
    await asyncio.gather(*protocol.tasks)


async def test_a_100_continue_still_held_leaves_before_the_whole_answer() -> None:
    """The body came with its head: `receive()` writes 100 Continue (held to join what follows) and
    the answer is written in the same turn, after it."""
    received: list[dict[str, Any]] = []
    _protocol, socket = await _served(_HEAD % (2, b"expect: 100-continue\r\n") + b"{}", _recording(received))
    assert received == [{"type": "http.request", "body": b"{}", "more_body": False}]
    assert socket.calls[0] == ("write", b"HTTP/1.1 100 Continue\r\n\r\n")
    assert socket.calls[1][1].startswith(b"HTTP/1.1 200 OK") and len(socket.calls) == 2


async def _direct(app: Any, log: logging.Handler) -> tuple[Any, Any]:
    """`app` served as a direct path, one request sent; returns once its task and any 500 have ended.

    `log` receives uvicorn's error log (its loggers do not propagate, and its config resets them)."""
    protocol, socket = connected(_answering("app", []), {"/mcp": app}, proxy_headers=False)
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(log)
    try:
        protocol.data_received(_HEAD % (2, b"") + b"{}")
        while protocol.tasks:  # the request's task, then the 500's it may start
            await asyncio.gather(*protocol.tasks, return_exceptions=True)
        await asyncio.sleep(0)
    finally:
        uvicorn_log.removeHandler(log)
    return protocol, socket


async def _fails(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("the app failed")


async def _fails_after_the_head(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    raise RuntimeError("the app failed")


async def _says_nothing(scope: Any, receive: Any, send: Any) -> None:
    return None


async def _answers_half(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})


async def _cancelled(scope: Any, receive: Any, send: Any) -> None:
    raise asyncio.CancelledError


@pytest.mark.parametrize(
    ("app", "logged", "answer"),
    [
        (_fails, "Exception in ASGI application", 500),
        (_cancelled, "Exception in ASGI application", 500),
        (_says_nothing, "returned without starting response", 500),
        (_fails_after_the_head, "Exception in ASGI application", None),
        (_answers_half, "returned without completing response", None),
    ],
)
async def test_a_direct_path_app_that_fails_is_logged_and_answered_as_uvicorn_does(
    app: Any, logged: str, answer: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    """Its task runs the app itself: `run_asgi`'s checks run once it ends (500, or the connection closed)."""
    protocol, socket = await _direct(app, caplog.handler)
    assert logged in caplog.text
    writes = b"".join(data for call, data in socket.calls if call.startswith("write"))
    if answer is None:
        assert ("close", b"") in socket.calls and b"500" not in writes
    else:
        assert writes.startswith(b"HTTP/1.1 500 ") and writes.endswith(b"Internal Server Error")
    assert not protocol.tasks and protocol.cycle.on_response() is None


async def test_a_websocket_upgrade_is_handed_to_uvicorns_websocket_protocol() -> None:
    """An upgrade request has no request cycle: its parser events must not look for one (a 400 then)."""
    events: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        events.append((scope["type"], await receive()))
        await send({"type": "websocket.accept"})

    protocol, socket = connected(app, proxy_headers=False)
    protocol.data_received(
        b"GET /ws HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: Upgrade\r\nupgrade: websocket\r\n"
        b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    )
    for _ in range(100):  # a hang guard, not a timing claim
        if events:
            break
        await asyncio.sleep(0.01)
    assert events == [("websocket", {"type": "websocket.connect"})]
    assert socket.calls[0] == ("set_protocol", b"")
    assert b"101 Switching Protocols" in socket.calls[1][1]


UVICORN_FOLDED = "03e2c82d150ea810e24a9e109afdbfc5b3f73e06a779d2b6463c5288329eaa61"
"""sha256 of uvicorn 0.54.0's sources that ingress's protocol and request cycle repeat or replace."""


def test_uvicorn_is_the_one_folded() -> None:
    # a uvicorn whose parser callbacks, task start, request cycle or run_asgi changed must be read
    # again, and `http_limits` / `request_cycle` brought in line, before this digest is renewed
    protocol, cycle = HttpToolsProtocol, RequestResponseCycle
    digest = hashlib.sha256()
    for source in (
        protocol.on_message_begin,
        protocol.on_url,
        protocol.on_header,
        protocol.on_headers_complete,
        protocol.on_body,
        protocol.on_message_complete,
        protocol._start_asgi_task,
        protocol.data_received,
        protocol.on_response_complete,
        cycle.__init__,
        cycle.receive,
        cycle.run_asgi,
    ):
        digest.update(inspect.getsource(source).encode())
    assert digest.hexdigest() == UVICORN_FOLDED
