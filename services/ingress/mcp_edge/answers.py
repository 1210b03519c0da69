"""Answers to a POST on `/mcp`: plain JSON, one SSE event, or an SSE stream once the request streams."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from services.ingress.protocol import encode_json
from services.ingress.sessions.streams import sse_event
from services.ingress.web.response_writes import send_whole

__all__ = ["JSON_HEADERS", "SSE_HEADERS", "Answer", "plain", "respond"]

Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]


class Answer:
    """The response to one POST.

    Plain JSON or one SSE event as usual, or, once the request streams (progress, logs, an upstream
    asking the agent something), an SSE stream that the answer closes."""

    __slots__ = ("_send", "_sse", "_streaming")

    def __init__(self, send: Send, sse: bool) -> None:
        self._send = send
        self._sse = sse
        self._streaming = False

    async def event(self, message: dict[str, Any]) -> None:
        if not self._streaming:
            self._streaming = True
            await self._send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await self._send({"type": "http.response.body", "body": sse_event(message), "more_body": True})

    async def final(
        self, payload: dict[str, Any], status: int = 200, extra: list[tuple[bytes, bytes]] | None = None
    ) -> int:
        if self._streaming:  # status and headers are long gone: the answer is the stream's last event
            data = sse_event(payload)
            await self._send({"type": "http.response.body", "body": data})
            return len(data)
        return await respond(self._send, payload, status, self._sse, extra)


async def respond(
    send: Send, payload: dict[str, Any], status: int, sse: bool, extra: list[tuple[bytes, bytes]] | None
) -> int:
    data = encode_json(payload)
    sse = sse and status == 200  # errors with an HTTP status go out as plain JSON, as the SDK does
    if sse:
        data = b"event: message\ndata: " + data + b"\n\n"
    size = len(data)  # asked once; its header formatted by `%`, not by str() and an encode call
    headers = (SSE_HEADERS if sse else JSON_HEADERS) + [(b"content-length", b"%d" % size)]
    if extra:
        headers += extra
    elif send_whole(send, status, headers, data):  # headers set by a handler take uvicorn's checks
        return size
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
    return size


async def plain(send: Send, status: int, payload: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    data = b"" if payload is None else orjson.dumps(payload)
    headers = [*JSON_HEADERS, (b"content-length", str(len(data)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
