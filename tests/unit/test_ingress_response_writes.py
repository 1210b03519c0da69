"""`HeadWithBody`: a response head leaves with its body in one write, alone by the end of the
loop's turn, and never after what was written behind it; `send_whole`: an answer known whole
leaves as uvicorn's two sends would write it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from services.ingress.mcp_edge.answers import respond
from services.ingress.web.http_limits import HttpLimits, guarded_protocol
from services.ingress.web.response_writes import HeadWithBody, send_whole

pytestmark = pytest.mark.unit

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recorded:
    """A transport that records each call that would reach the socket."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, parts: Any) -> None:
        self.calls.append(("writelines", b"".join(parts)))

    def write_eof(self) -> None:
        self.calls.append(("eof", b""))

    def close(self) -> None:
        self.calls.append(("close", b""))

    def is_closing(self) -> bool:
        return False


async def test_a_head_and_its_body_leave_in_one_write() -> None:
    raw = Recorded()
    transport = HeadWithBody(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(HEAD)
    assert raw.calls == []
    transport.write(b"{}")
    assert raw.calls == [("writelines", HEAD + b"{}")]
    await asyncio.sleep(0)  # the turn's end finds nothing held
    assert raw.calls == [("writelines", HEAD + b"{}")]
    assert transport.is_closing() is False  # the rest is the transport's


async def test_a_head_without_a_body_yet_leaves_by_the_end_of_the_turn() -> None:
    raw = Recorded()
    transport = HeadWithBody(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(HEAD)
    await asyncio.sleep(0)
    assert raw.calls == [("write", HEAD)]
    transport.write(b"data: 1\n\n")
    assert raw.calls[-1] == ("write", b"data: 1\n\n")


@pytest.mark.parametrize("end", ["close", "write_eof"])
async def test_a_held_head_goes_out_before_the_connection_ends(end: str) -> None:
    raw = Recorded()
    transport = HeadWithBody(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(HEAD)
    getattr(transport, end)()
    assert raw.calls == [("write", HEAD), ("close" if end == "close" else "eof", b"")]


class Socket(Recorded):
    """What uvicorn's protocol asks of a transport besides writing."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 4000) if name in ("peername", "sockname") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        self.calls.append(("set_protocol", b""))


def connected(app: Any, direct: dict[str, Any] | None = None, **settings: Any) -> tuple[Any, Socket]:
    """Ingress's own HTTP protocol serving `app`, connected to a recorded socket.

    `direct`: paths it serves with their own app; `settings`: uvicorn's."""
    settings = {"lifespan": "off", "access_log": False, "log_level": "warning"} | settings
    config = uvicorn.Config(app=app, http="httptools", **settings)
    config.load()
    state = ServerState()
    state.default_headers = [(b"date", b"Wed, 25 Nov 2026 18:50:00 GMT"), (b"server", b"uvicorn")]
    limits = HttpLimits(100, 8192, 32768, 100, 30.0, 30.0)
    protocol = guarded_protocol(limits, direct)(config=config, server_state=state, app_state={})
    socket = Socket()
    protocol.connection_made(socket)  # type: ignore[arg-type]
    return protocol, socket


async def _served(request: bytes, app: Any) -> tuple[Any, Socket]:
    """Ingress's own HTTP protocol on a recorded socket, `request` received and served by `app`."""
    protocol, socket = connected(app)
    protocol.data_received(request)
    await asyncio.gather(*protocol.tasks)
    await asyncio.sleep(0)  # a held head's turn ends
    return protocol, socket


_REQUEST = b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 2\r\n%s\r\n{}"


@pytest.mark.parametrize("connection", [b"", b"connection: close\r\n"])
@pytest.mark.parametrize(("status", "sse"), [(200, False), (200, True), (404, False)])
async def test_a_whole_answer_is_written_as_uvicorns_two_sends_write_it(
    connection: bytes, status: int, sse: bool
) -> None:
    """`respond` writes the bytes uvicorn's `http.response.start` and `.body` write, in one write,
    and leaves the connection as they do: closed when the agent asked, else ready for the next
    request."""
    payload = {"jsonrpc": "2.0", "id": 1, "result": {"content": []}}
    written = []
    for whole in (False, True):

        async def app(scope: Any, receive: Any, send: Any, whole: bool = whole) -> None:
            # a wrapped send is not uvicorn's: it takes the two sends, as `respond` did before
            await respond(send if whole else (lambda message: send(message)), payload, status, sse, None)

        protocol, socket = await _served(_REQUEST % connection, app)
        assert protocol.cycle.response_complete
        written.append(socket.calls)
        if not connection:
            protocol.data_received(_REQUEST % b"")
            assert protocol.server_state.total_requests == 1 and protocol.cycle.response_complete is False
            await asyncio.gather(*protocol.tasks)
    old, new = written
    assert b"".join(data for _, data in old) == b"".join(data for _, data in new)
    assert new[0][0] == "write" and b"\r\n\r\n" in new[0][1]
    assert (b"connection: close\r\n" in new[0][1]) == bool(connection)
    assert ("close", b"") in new if connection else len(new) == 2  # the second request's answer


async def test_an_answer_outside_ingress_own_server_takes_the_asgi_sends() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    assert await respond(send, {}, 200, False, None) == 2
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]
    refused = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        refused.append(send_whole(send, 200, [(b"content-length", b"2")], b"{}"))  # started already
        await send({"type": "http.response.body", "body": b"{}"})

    await _served(_REQUEST % b"", app)
    assert refused == [False]


async def test_a_kept_alive_connection_closes_once_idle_for_the_keep_alive_timeout() -> None:
    """One keep-alive timer per connection: a request that came meanwhile pushes the close back
    to a whole timeout after its own answer; an idle connection is closed."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await respond(send, {}, 200, False, None)

    protocol, socket = await _served(_REQUEST % b"", app)
    protocol.timeout_keep_alive = 0.5  # the first answer's timer is already armed at uvicorn's 5 s
    protocol.data_received(_REQUEST % b"")  # the connection is busy again ...
    await asyncio.gather(*protocol.tasks)  # ... and idle from this answer on
    timer = protocol.timeout_keep_alive_task
    assert timer is not None
    timer.cancel()
    protocol._keep_alive_due()  # the first timer firing early: not idle long enough, it waits for the rest
    assert ("close", b"") not in socket.calls and protocol.timeout_keep_alive_task is not None
    await asyncio.sleep(0.3)
    protocol.data_received(_REQUEST % b"")
    await asyncio.gather(*protocol.tasks)
    await asyncio.sleep(0.3)  # past the first deadline, not the second
    assert ("close", b"") not in socket.calls
    for _ in range(100):  # a hang guard, not a timing claim
        if ("close", b"") in socket.calls:
            break
        await asyncio.sleep(0.05)
    assert ("close", b"") in socket.calls
    assert [data[:15] for call, data in socket.calls if call == "write"] == [b"HTTP/1.1 200 OK"] * 3
