"""`bounded_http.BoundedTransport` against a real HTTP server: bodies cut off past the limit whether
their length is declared or not; event streams left to the per-event bound."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest
from aiohttp import web

from services.executor.upstreams.mcp.bounded_http import AnswerTooLong, BoundedTransport

pytestmark = pytest.mark.unit

LIMIT = 1000


async def declared(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * int(request.query["n"]), content_type="application/json")


async def chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    left = int(request.query["n"])
    while left:  # in pieces, no length declared
        piece = min(left, 100)
        await response.write(b"y" * piece)
        left -= piece
    await response.write_eof()
    return response


async def events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    for n in range(50):  # 50 small events, together far past the limit
        await response.write(f"event: message\ndata: {'z' * 60} {n}\n\n".encode())
    await response.write_eof()
    return response


@pytest.fixture
async def client() -> AsyncIterator[httpx2.AsyncClient]:
    app = web.Application()
    app.router.add_get("/declared", declared)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/events", events)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    transport = BoundedTransport(httpx2.AsyncHTTPTransport(), LIMIT)
    try:
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", transport=transport) as http:
            yield http
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("path", ["/declared", "/chunked"])
async def test_a_body_up_to_the_limit_is_read_whole_and_a_longer_one_fails(
    client: httpx2.AsyncClient, path: str
) -> None:
    assert len((await client.get(path, params={"n": LIMIT})).content) == LIMIT
    with pytest.raises(AnswerTooLong, match="longer than 1,000 bytes") as caught:
        await client.get(path, params={"n": 50 * LIMIT})
    assert isinstance(caught.value, httpx2.StreamError)  # what the SDK turns into an error answer
    if path == "/declared":
        assert "(50,000 bytes)" in str(caught.value)  # refused on the declared length, unread
    # the client is still usable after a body it gave up on
    assert len((await client.get(path, params={"n": 10})).content) == 10


async def test_an_event_stream_is_not_cut_as_a_whole(client: httpx2.AsyncClient) -> None:
    async with client.stream("GET", "/events") as response:
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert len(body) > LIMIT and body.count(b"event: message") == 50
