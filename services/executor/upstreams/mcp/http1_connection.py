"""One keep-alive HTTP/1.1 connection of the executor's pool (`http1.HttpPool`), and the answer read on it.

An answer is parsed by llhttp (httptools) as it arrives: its head bounded (llhttp bounds none), its
body buffered up to a high-water mark before the socket stops being read. A connection breaks, and
fails its answer, on anything it cannot trust to end where the next answer begins.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import cast

import httptools

from .http1_headers import answer_headers

__all__ = ["BodyTooLarge", "Connection", "HttpClosed", "Response"]

_HIGH_WATER = 1 << 20
"""Bytes of an answer buffered before the socket stops being read (the reader is slower)."""
_NO_BODY = frozenset((204, 304))
_HEAD_LIMIT = 1 << 16
"""Bytes an answer may take before its head is whole (interim answers' included): llhttp bounds no head."""


class HttpClosed(ConnectionError):
    """The connection closed, or the server broke HTTP, before the answer was whole."""


class BodyTooLarge(Exception):
    """The body is longer than the reader's limit; what was past it was never buffered."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is longer than {limit:,} bytes")
        self.limit = limit


class Response:
    """One answer: its status and headers at once, its body as it arrives."""

    __slots__ = ("_buffered", "_chunks", "_error", "_paused", "_transport", "_waiter", "done", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], transport: asyncio.Transport) -> None:
        self.status = status
        self.headers = headers
        """Lower-case names; a repeated header's values joined by ", "."""
        self.done = False
        """The whole answer has arrived (it may not all have been read)."""
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._transport = transport
        self._paused = False

    async def read(self, limit: int | None = None) -> bytes:
        """The rest of the body, whole.

        `BodyTooLarge` once it passes `limit` bytes (then the connection is not reused: the rest is never
        read)."""
        if self.done:  # the usual small answer: it came whole with its head
            size = self._buffered
            if limit is not None and size > limit:
                raise BodyTooLarge(limit)
            return self._take() if size else b""
        parts = []
        size = 0
        while True:
            if self._chunks:
                parts.append(part := self._take())
                size += len(part)
                if limit is not None and size > limit:
                    raise BodyTooLarge(limit)
            if self.done:
                return b"".join(parts)
            await self._more()

    def whole(self, limit: int | None) -> bytes | None:
        """The body when it is all here, unpaused and no longer than `limit` bytes; else None (`read` it)."""
        if not self.done or self._paused or (limit is not None and self._buffered > limit):
            return None
        data = b"".join(self._chunks)  # of one chunk: that chunk, not a copy
        self._chunks = []
        self._buffered = 0
        return data

    async def iter_any(self) -> AsyncIterator[bytes]:
        """The body in the pieces it arrives in."""
        while True:
            if self._chunks:
                yield self._take()
            elif self.done:
                return
            else:
                await self._more()

    def _take(self) -> bytes:
        data = b"".join(self._chunks)  # of one chunk: that chunk, not a copy
        self._chunks = []
        self._buffered = 0
        if self._paused:
            self._paused = False
            self._transport.resume_reading()
        return data

    async def _more(self) -> None:
        if self._error is not None:
            raise self._error
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self._error is not None and not self._chunks and not self.done:
            raise self._error

    def _finish(self) -> None:
        self.done = True
        self._wake()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Connection(asyncio.Protocol):
    """One keep-alive connection: at most one exchange at a time (no pipelining)."""

    def __init__(self, on_lost: Callable[[Connection], None]) -> None:
        self.transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_lost = on_lost
        self.closed = False
        self.keep_alive = False
        self._parser = httptools.HttpResponseParser(self)
        self._head: asyncio.Future[Response] | None = None
        self._response: Response | None = None
        self._header_lines: list[bytes] = []
        """Names and values of the answer's headers so far, alternating."""
        self._interim = False
        self._until_close = False
        self._unanswered = 0
        """Bytes read since the request went out while its answer's head is not whole (`_HEAD_LIMIT`)."""

    def send(self, request: bytes) -> asyncio.Future[Response]:
        """Write `request`; the answer once its head has arrived.

        A future, not a coroutine: awaiting it directly spares a coroutine's call and resumption per POST."""
        assert self.transport is not None and self._loop is not None
        self._head = head = self._loop.create_future()
        self._response = None
        self._unanswered = 0
        self.keep_alive = False
        self.transport.write(request)
        return head

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        self._loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        if self._head is None:  # bytes nobody asked for: this connection's framing cannot be trusted
            self._broken(HttpClosed("the server sent bytes with no request outstanding"))
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._broken(HttpClosed(f"the server's answer is not valid HTTP/1.1: {exc}"))
            return
        if self._response is None:  # llhttp holds a head's fields until it ends: bounded here, per read
            self._unanswered += len(data)
            if self._unanswered > _HEAD_LIMIT:
                self._broken(HttpClosed(f"the server's answer head exceeds {_HEAD_LIMIT:,} bytes"))

    def eof_received(self) -> bool:
        self.closed = True
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self._response
        if response is not None and not response.done and self._until_close:
            response._finish()  # a body delimited by the connection's end is whole now
        else:
            self._fail(HttpClosed("the server closed the connection before its answer was whole"))
        self._on_lost(self)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_lines += (name, value)  # not .append(): no call, for each header of every answer

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        lines, self._header_lines = self._header_lines, []
        if 100 <= status < 200:  # an interim answer (103 Early Hints, a stray 100): the real one follows
            self._interim = True
            return
        head, transport = self._head, self.transport
        if head is None or head.done() or transport is None:
            self._broken(HttpClosed("the server sent an answer with no request outstanding"))
            return
        headers = answer_headers(lines)
        self._until_close = (
            status not in _NO_BODY
            and "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
        )
        self._response = response = Response(status, headers, transport)
        head.set_result(response)

    def on_body(self, body: bytes) -> None:
        if (response := self._response) is not None:  # the answer's buffer, filled here: no call per answer
            response._chunks += (body,)  # not .append(): no call either
            response._buffered += len(body)
            if response._buffered > _HIGH_WATER and not response._paused:
                response._paused = True
                response._transport.pause_reading()
            response._wake()

    def on_message_complete(self) -> None:
        # a chunked answer's trailer fields came through `on_header` after its head: no answer's headers
        self._header_lines = []
        if self._interim:
            self._interim = False
            return
        self.keep_alive = self._parser.should_keep_alive()
        self._head = None
        if self._response is not None:
            self._response._finish()

    def _broken(self, error: HttpClosed) -> None:
        self._fail(error)
        self.close()

    def _fail(self, error: HttpClosed) -> None:
        head, self._head = self._head, None
        if head is not None and not head.done():
            head.set_exception(error)
        if self._response is not None and not self._response.done:
            self._response._fail(error)
