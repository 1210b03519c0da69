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
from collections.abc import Awaitable, Callable, Mapping

from .http1_connection import Connection, HttpClosed, Response
from .http1_headers import checked_headers

__all__ = ["HttpPool"]

_HEADS = 512
"""Request heads kept (`HttpPool._request`): sessions times tools, and `Mcp-Param-*` values."""


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
        self._idle: list[Connection] = []
        self._open: set[Connection] = set()
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

    def take(self) -> Connection | None:
        """An idle connection with its slot, when one is free right now; None: POST the usual way (`post`).

        What `_Post.__aenter__` does when nothing need be awaited, for a caller that awaits the connection's
        `send` itself: it gives the connection back with `put`, in a `finally`."""
        if self._free > 0 and not self._queue and self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                self._free -= 1
                return connection
        return None

    def put(self, connection: Connection | None, response: Response | None) -> None:
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

    async def _connect(self) -> Connection:
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

    async def _open_to(self, addresses: list[str]) -> Connection:
        """A connection to the first of `addresses` that answers; TLS still names the URL's host."""
        loop = asyncio.get_running_loop()
        server_hostname = self._host if self._ssl is not None else None
        failure: OSError | None = None
        for address in addresses:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    _, connection = await loop.create_connection(
                        lambda: Connection(self._forget),
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

    def _discard(self, connection: Connection) -> None:
        connection.close()
        self._forget(connection)

    def _forget(self, connection: Connection) -> None:
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
        self._connection: Connection | None = None
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
