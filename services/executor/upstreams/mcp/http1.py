"""HTTP/1.1 POSTs for lean sends: pooled keep-alive connections, answers parsed by llhttp (httptools).

aiohttp cost ~120 µs of CPU per POST on this path (its request and response objects, stream reader,
timers and hooks around what is one write and one parse); this costs ~15-25 (docs/benchmarks.md).
It does what a lean `tools/call` needs and nothing else: POST with a body of known length, no
redirects followed (the caller sees the 3xx), no cookies, no proxies (`lean._proxied` keeps proxied
upstreams on the SDK's httpx2 path), identity encoding only (asked for, so nothing to decompress).

A connection goes back to the pool only after a whole answer that allows keep-alive; one whose
answer was left unread, cut short or cancelled is closed, so a late byte of an old answer can never
be read as part of a new one. A POST is never resent on another connection: the server may have run
it (the caller reports an unavailable upstream, as it did for aiohttp's disconnects).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import cast

import httptools

from .http1_headers import answer_headers, checked_headers

__all__ = ["BodyTooLarge", "HttpClosed", "HttpPool", "Response"]

_HIGH_WATER = 1 << 20
"""Bytes of an answer buffered before the socket stops being read (the reader is slower)."""
_NO_BODY = frozenset((204, 304))
_HEAD_LIMIT = 1 << 16
"""Bytes an answer may take before its head is whole (interim answers' included): llhttp bounds no head."""
_HEADS = 512
"""Request heads kept (`HttpPool._request`): sessions times tools, and `Mcp-Param-*` values."""


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


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one exchange at a time (no pipelining)."""

    def __init__(self, on_lost: Callable[[_Connection], None]) -> None:
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


class HttpPool:
    """Keep-alive connections to the origin of one URL, POSTing to that URL."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        limit: int = 256,
        addresses: Callable[[str, int], Awaitable[list[str]]] | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        """`addresses`.

        (Host, port) -> the addresses a connection may go to, in order, each checked
        (`libs.common.web.egress_rules.EgressRules.addresses`); None: the host, resolved as usual.
        `connect_timeout`: seconds one connection attempt may take (`TimeoutError`); None: no limit of its own."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {parts.scheme}://{parts.hostname or ''}")
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        self._addresses = addresses
        self._connect_timeout = connect_timeout
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        authority = parts.netloc.rpartition("@")[2]  # never the userinfo
        self._start = f"POST {target} HTTP/1.1\r\nhost: {authority}\r\n"
        self._get_start = f"GET {target} HTTP/1.1\r\nhost: {authority}\r\n"
        self._defaults = {"user-agent": "bastion", "accept-encoding": "identity"}
        self._defaults.update(checked_headers(headers or {}))
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._free = limit
        """Connections that may still be taken (`_Post`): a count and a queue rather than an
        `asyncio.Semaphore`, whose acquire and release cost six Python calls per POST."""
        self._queue: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False
        self._heads: dict[tuple[tuple[str, str], ...], tuple[bytes, bytes]] = {}
        """A request's headers -> its head, in two parts around the content-length value."""

    def post(self, body: bytes, headers: Mapping[str, str]) -> _Post:
        """POST `body` with `headers` (over the pool's own).

        The answer, readable inside the block (`async with pool.post(...) as response`)."""
        return _Post(self, self._request(body, headers))

    def get(self, headers: Mapping[str, str]) -> _Post:
        """GET the URL with `headers` (over the pool's own): how a cut SSE answer is resumed (`Last-Event-ID`).

        Rare, so its head is built each time, not kept."""
        merged = dict(self._defaults)
        merged.update(checked_headers(headers))
        head = self._get_start + "".join(f"{name}: {value}\r\n" for name, value in merged.items()) + "\r\n"
        try:
            return _Post(self, head.encode("latin-1"))
        except UnicodeEncodeError:
            raise ValueError("a request header holds characters HTTP/1.1 cannot carry") from None

    def take(self) -> _Connection | None:
        """An idle connection with its slot, when one is free right now; None: POST the usual way (`post`).

        What `_Post.__aenter__` does when nothing need be awaited, for a caller that awaits the connection's
        `send` itself: it gives the connection back with `put`, in a `finally`."""
        if self._free > 0 and not self._queue and self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                self._free -= 1
                return connection
        return None

    def put(self, connection: _Connection | None, response: Response | None) -> None:
        """A slot back, with the connection from `take` (None: none was taken).

        The connection goes to the idle ones if its answer was whole and allows keep-alive."""
        if connection is not None:
            if response is not None and response.done and connection.keep_alive and not connection.closed:
                self._idle.append(connection)
            else:
                self._discard(connection)
        if self._queue:
            self._give_slot()
        else:
            self._free += 1

    async def close(self) -> None:
        self._closed = True
        for connection in list(self._open):
            self._discard(connection)

    @property
    def connections(self) -> int:
        """Connections open now (idle or busy)."""
        return len(self._open)

    def _request(self, body: bytes, headers: Mapping[str, str]) -> bytes:
        key = tuple(headers.items())
        if key in self._heads:
            head = self._heads[key]
        else:
            head = self.head(headers)
            if len(self._heads) >= _HEADS:
                self._heads.clear()
            self._heads[key] = head
        return b"%b%d%b%b" % (head[0], len(body), head[1], body)

    def head(self, headers: Mapping[str, str]) -> tuple[bytes, bytes]:
        """A POST's head with `headers`, in two parts around its content-length value.

        Each exchange's headers are mostly the same ones (the session's, the method's, the tool's name),
        so heads are kept by them: checking and joining the headers every time cost ~3 µs of a POST's
        CPU."""
        merged = dict(self._defaults)
        merged.update(checked_headers(headers))
        merged["content-length"] = "\x00"  # the length's place: no checked name or value holds a NUL
        head = self._start + "".join(f"{name}: {value}\r\n" for name, value in merged.items()) + "\r\n"
        try:
            before, _, after = head.encode("latin-1").rpartition(b"\x00")
        except UnicodeEncodeError:
            raise ValueError("a request header holds characters HTTP/1.1 cannot carry") from None
        return before, after

    async def _wait_for_slot(self) -> None:
        """Wait until a finished POST hands this one its slot (`_give_slot`), in the order they asked."""
        waiter = asyncio.get_running_loop().create_future()
        self._queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                if waiter in self._queue:
                    self._queue.remove(waiter)
            else:  # handed the slot as it was cancelled: the next one gets it
                self._give_slot()
            raise

    def _give_slot(self) -> None:
        """A POST is done with its slot: to the first one waiting, else back to the count."""
        queue = self._queue
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    async def _connect(self) -> _Connection:
        if self._closed:
            raise HttpClosed("the connection pool is closed")
        connection = await self._open_to(
            await self._addresses(self._host, self._port) if self._addresses else [self._host]
        )
        if self._closed:  # closed while connecting: `close()` never saw this one
            connection.close()
            raise HttpClosed("the connection pool is closed")
        self._open.add(connection)
        return connection

    async def _open_to(self, addresses: list[str]) -> _Connection:
        """A connection to the first of `addresses` that answers; TLS still names the URL's host."""
        loop = asyncio.get_running_loop()
        server_hostname = self._host if self._ssl is not None else None
        failure: OSError | None = None
        for address in addresses:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self._forget),
                        address,
                        self._port,
                        ssl=self._ssl,
                        server_hostname=server_hostname,
                    )
                return connection
            except OSError as exc:
                failure = exc
        assert failure is not None
        raise failure

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._forget(connection)

    def _forget(self, connection: _Connection) -> None:
        """`connection` is closed (by us or the server): it leaves the pool."""
        self._open.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)


class _Post:
    """One POST as an `async with` block.

    A connection from the pool for the block, back to the pool after it if its answer was whole and
    allows keep-alive. A class rather than an `asynccontextmanager`: the generator and its wrapper cost
    ~1 µs more per POST."""

    __slots__ = ("_connection", "_pool", "_request", "_response", "_slot")

    def __init__(self, pool: HttpPool, request: bytes) -> None:
        self._pool = pool
        self._request = request
        self._connection: _Connection | None = None
        self._response: Response | None = None
        self._slot = False

    async def __aenter__(self) -> Response:
        pool = self._pool
        if pool._free > 0 and not pool._queue:
            pool._free -= 1
        else:
            await pool._wait_for_slot()
        self._slot = True
        try:
            connection = pool._idle.pop() if pool._idle else None
            if connection is None or connection.closed:  # a closed one leaves `_open` in its connection_lost
                connection = await pool._connect()
            self._connection = connection
            self._response = await connection.send(self._request)
        except BaseException:
            self._release()
            raise
        return self._response

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        if self._slot:
            self._slot = False
            connection, self._connection = self._connection, None
            self._pool.put(connection, self._response)
