"""A kept-alive connection that sends only the blank lines HTTP allows between requests is idle:
its keep-alive timeout still closes it (each one would otherwise hold a connection slot forever)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.ingress.mcp_edge.answers import respond
from tests.unit.test_ingress_response_writes import connected

pytestmark = pytest.mark.unit

_REQUEST = b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 2\r\n\r\n{}"


async def _answer(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await respond(send, {}, 200, False, None)


async def test_blank_lines_after_an_answer_do_not_keep_the_connection_open() -> None:
    protocol, socket = connected(_answer, proxy_headers=False)
    protocol.data_received(_REQUEST)
    await asyncio.gather(*protocol.tasks)
    protocol.timeout_keep_alive = 0.3  # the answer's timer is armed at uvicorn's 5 s: armed again shorter
    protocol.timeout_keep_alive_task.cancel()
    protocol.timeout_keep_alive_task = protocol.loop.call_later(0.3, protocol._keep_alive_due)
    for _ in range(200):  # a hang guard, not a timing claim
        protocol.data_received(b"\r\n")  # what llhttp skips between requests: no request begins
        if ("close", b"") in socket.calls:
            break
        await asyncio.sleep(0.05)
    assert ("close", b"") in socket.calls


async def test_a_request_begun_after_an_answer_is_not_idle() -> None:
    """The next request's first bytes make the connection busy.

    The keep-alive timer leaves it to the head's deadline."""
    protocol, socket = connected(_answer, proxy_headers=False)
    protocol.data_received(_REQUEST)
    await asyncio.gather(*protocol.tasks)
    protocol.data_received(_REQUEST[:10])
    assert protocol._idle_since is None and protocol._deadline_for == "head"
    protocol._keep_alive_due()
    assert ("close", b"") not in socket.calls
    protocol.data_received(_REQUEST[10:])
    await asyncio.gather(*protocol.tasks)
    assert [data[:15] for call, data in socket.calls if call == "write"] == [b"HTTP/1.1 200 OK"] * 2
