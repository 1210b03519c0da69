"""The HTTP edge under hostile clients: slow heads (slowloris), slow bodies, huge or countless
headers, long request lines and connection floods are cut off, and the gateway keeps serving."""

from __future__ import annotations

import asyncio
import contextlib

import httpx2
import pytest

from tests.support.gateway import ADMIN_HEADERS, gateway_on_own_servers

pytestmark = pytest.mark.integration

AUTH = ADMIN_HEADERS
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
MAX_CONNECTIONS = 50
CUT_WITHIN = 20.0
"""Bound on waiting for the server to close a connection: a hang guard, not a timing claim."""


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("http-limits")
    async with gateway_on_own_servers(
        workdir,
        header_timeout=HEADER_TIMEOUT,
        body_timeout=BODY_TIMEOUT,
        max_connections=MAX_CONNECTIONS,
        max_header_bytes=8 * 1024,
        max_headers=30,
        max_request_line_bytes=1024,
    ) as gw:
        yield gw


async def _serves(gateway) -> None:
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(gateway.url, headers=AUTH, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert response.status_code == 200 and response.json()["result"] == {}


async def _open(gateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", gateway.ingress.port)


async def _answer(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (b"" if it just closes)."""
    with contextlib.suppress(ConnectionError):
        return await asyncio.wait_for(reader.read(), CUT_WITHIN)
    return b""


def _status(answer: bytes) -> int | None:
    return int(answer.split()[1]) if answer.startswith(b"HTTP/1.1 ") else None


async def test_slowloris_connections_are_cut_and_the_gateway_keeps_serving(gateway):
    """240 clients trickle a request head; none may hold its connection: over the connection cap
    they are refused at once (503), the rest are cut when the head deadline passes (408)."""
    connections = []
    for _ in range(240):  # each read from the start: a refusal is answered at once, and must be seen
        reader, writer = await _open(gateway)
        connections.append((asyncio.ensure_future(_answer(reader)), writer))

    async def trickle(answer: asyncio.Future[bytes], writer: asyncio.StreamWriter) -> int | None:
        with contextlib.suppress(ConnectionError):
            writer.write(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            for i in range(1000):  # one header byte at a time, far longer than the deadline
                if answer.done():
                    break
                writer.write(b"X-Slow-%d: 1\r\n" % i)
                await writer.drain()
                await asyncio.sleep(0.2)
        status = _status(await answer)
        writer.close()
        return status

    statuses = await asyncio.gather(*(trickle(answer, writer) for answer, writer in connections))
    assert set(statuses) <= {408, 503}, statuses
    assert statuses.count(503) >= 240 - MAX_CONNECTIONS
    assert 408 in statuses
    await _serves(gateway)


async def test_a_connection_that_sends_nothing_is_closed(gateway):
    reader, writer = await _open(gateway)
    assert _status(await _answer(reader)) == 408
    writer.close()


async def test_a_body_that_stops_arriving_is_cut_without_an_answer(gateway):
    reader, writer = await _open(gateway)
    writer.write(
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {AUTH['Authorization']}\r\n"
        'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"jsonrpc":'.encode()
    )
    await writer.drain()
    assert await _answer(reader) == b""  # closed: the app saw a disconnect and answered nobody
    writer.close()
    await _serves(gateway)


async def test_a_huge_header_is_refused_before_it_is_read(gateway):
    """64 MB of one header value: the server answers 431 after a few KB and closes; the client
    cannot even finish sending."""
    reader, writer = await _open(gateway)
    answer = asyncio.ensure_future(_answer(reader))
    sent = 0
    with contextlib.suppress(ConnectionError):
        writer.write(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: ")
        while sent < 64 * 1024 * 1024 and not answer.done():
            writer.write(b"a" * 65536)
            await writer.drain()
            sent += 65536
    assert _status(await answer) == 431
    assert sent < 64 * 1024 * 1024
    writer.close()
    await _serves(gateway)


@pytest.mark.parametrize(
    ("head", "status", "says"),
    [
        (b"".join(b"X-H%d: v\r\n" % i for i in range(40)), 431, b"more than 30 header fields"),
        (b"X-A: " + b"a" * 5000 + b"\r\nX-B: " + b"b" * 5000 + b"\r\n", 431, b"exceed 8192 bytes"),
    ],
)
async def test_too_many_or_too_large_headers(gateway, head, status, says):
    reader, writer = await _open(gateway)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head + b"\r\n")
    answer = await _answer(reader)
    assert _status(answer) == status and says in answer, answer
    writer.close()


async def test_too_large_headers_of_a_pipelined_request_are_refused(gateway):
    """The head counted from where its request begins, also mid-read: a request pipelined behind
    another, in the same write, is held to the same limit."""
    reader, writer = await _open(gateway)
    first = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    second = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: " + b"a" * 4500 + b"\r\nX-B: " + b"b" * 4500
    writer.write(first + second + b"\r\n\r\n")
    answer = await _answer(reader)
    assert b"HTTP/1.1 431 " in answer and b"exceed 8192 bytes" in answer, answer
    writer.close()


async def test_a_long_request_line_is_refused(gateway):
    reader, writer = await _open(gateway)
    writer.write(b"GET /" + b"p" * 2000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = await _answer(reader)
    assert _status(answer) == 414 and b"1024 bytes" in answer
    writer.close()


async def test_kept_alive_connections_serve_many_requests_within_the_limits(gateway):
    """The limits are per request head, not per connection: one connection, many requests."""
    async with httpx2.AsyncClient(timeout=30) as http:
        for i in range(50):
            response = await http.post(gateway.url, headers=AUTH, json={"jsonrpc": "2.0", "id": i, "method": "ping"})
            assert response.status_code == 200
