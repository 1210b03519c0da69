"""How the executor POSTs to a model provider (`services.executor.llm_http`): keep-alive connections
reused across completions, the egress rules' refusal as the reason a provider is unreachable, a
stalled answer or a connection never accepted as a timeout, a stream cut midway as broken."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest

from libs.common.web.egress_rules import EgressRules
from services.executor import llm_http
from services.executor.llm_http import Broken, ProviderHttp, Unreachable

pytestmark = pytest.mark.unit

LOOPBACK = EgressRules(["127.0.0.1"])


class _KeepAlive:
    """A server answering each request on a connection with `answer`, counting connections."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                self.requests.append(head + await reader.readexactly(length))
                if not self.answer:
                    return  # close without answering
                writer.write(self.answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def _served(server: _KeepAlive) -> AsyncIterator[str]:
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        listening.close()


async def test_completions_reuse_one_keep_alive_connection() -> None:
    server = _KeepAlive(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
    http = ProviderHttp(LOOPBACK, timeout=5)
    async with _served(server) as url:
        for _ in range(3):
            async with http.post(url, b'{"model": "m"}', {"content-type": "application/json"}) as answer:
                assert (answer.status, await answer.read()) == (200, b"{}")
        await http.aclose()
    assert server.connections == 1 and len(server.requests) == 3
    assert server.requests[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")


async def test_a_provider_the_egress_rules_refuse_is_unreachable_with_their_reason() -> None:
    http = ProviderHttp(EgressRules(), timeout=5)
    with pytest.raises(Unreachable, match=r"refused to connect to 127\.0\.0\.1"):
        async with http.post("http://127.0.0.1:9/v1/chat/completions", b"{}", {}):
            pass
    await http.aclose()


async def test_a_connection_closed_before_an_answer_is_unreachable_and_a_stall_times_out() -> None:
    http = ProviderHttp(LOOPBACK, timeout=0.3)
    async with _served(_KeepAlive(b"")) as url:
        with pytest.raises(Unreachable):
            async with http.post(url, b"{}", {}):
                pass
    stalled = _KeepAlive(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{")  # the rest never comes
    async with _served(stalled) as url:
        with pytest.raises(TimeoutError):
            async with http.post(url, b"{}", {}) as answer:
                await answer.read()
    await http.aclose()


async def test_a_stream_cut_midway_is_broken() -> None:
    cut = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n5\r\ndata:\r\n"

    class _Cut(_KeepAlive):
        async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(cut)
            await writer.drain()
            writer.transport.abort()

    http = ProviderHttp(LOOPBACK, timeout=5)
    async with _served(_Cut(b"")) as url:
        pieces = []
        with pytest.raises(Broken):
            async with http.post(url, b"{}", {}) as answer:
                async for piece in answer.pieces():
                    pieces.append(piece)
    assert b"".join(pieces) == b"data:"
    await http.aclose()


async def test_a_host_that_never_accepts_the_connection_times_out_at_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """A silently dropped connection attempt ends after the connect timeout, not the provider's whole
    `timeout` (a slow completion's allowance): the next deployment takes the request in seconds."""
    monkeypatch.setattr(llm_http, "_CONNECT_TIMEOUT", 0.2)
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(0)  # never accepted: the one queued connection fills the backlog, later SYNs are dropped
    port = listening.getsockname()[1]
    queued = socket.create_connection(("127.0.0.1", port))
    http = ProviderHttp(LOOPBACK, timeout=3600)
    try:
        async with asyncio.timeout(60) as guard:  # a hang guard only: without the connect timeout, an hour
            with pytest.raises(TimeoutError):
                async with http.post(f"http://127.0.0.1:{port}/v1/chat/completions", b"{}", {}):
                    pass
        assert not guard.expired()
    finally:
        await http.aclose()
        queued.close()
        listening.close()
