"""A response's head and its body in one socket write.

uvicorn writes an answer's status line and headers (`http.response.start`) and then its body
(`http.response.body`) with one `transport.write` each, and uvloop sends each at once: two system
calls and two TCP segments per answer, each waking the client. `HeadWithBody` wraps the
connection's transport and holds a response head until the next write, which it joins (one
`writelines`, one `writev`), or until the end of the current turn of the event loop at the latest
(`call_soon`), so a head whose body comes later (an SSE stream) still leaves at once. Order is
kept: nothing written after a held head overtakes it.

An answer whose status, headers and body are all known at once (`/mcp`'s JSON answers) skips
uvicorn's two ASGI sends altogether (`send_whole`): one write of the bytes those sends would have
written, and the request cycle left as they would have left it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from services.ingress.web.request_cycle import RequestCycle

__all__ = ["HeadWithBody", "send_whole"]

_HEAD = b"HTTP/1.1 "
"""How every response head uvicorn writes begins (`STATUS_LINE`)."""


class HeadWithBody:
    """`transport`, writing a response head together with what follows it (see the module)."""

    __slots__ = ("_held", "_loop", "_transport", "is_closing")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self.is_closing = transport.is_closing
        """The transport's own: asked at the end of every response, so not through `__getattr__`."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif data[: len(_HEAD)] == _HEAD:
            self._held = bytes(data)
            self._loop.call_soon(self.release)
        else:
            self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self.release()
        self._transport.writelines(list_of_data)

    def release(self) -> None:
        """Write the held head, if any, on its own."""
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def write_eof(self) -> None:
        self.release()
        self._transport.write_eof()

    def close(self) -> None:
        self.release()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's
        return getattr(self._transport, name)


_defaults: tuple[list[tuple[bytes, bytes]] | None, bytes] = (None, b"")
"""uvicorn's default headers (`date`, `server`) as last written: the list changes once a second."""


def send_whole(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
    """Write a whole answer at once.

    As `http.response.start` with `headers` (lower-case names and valid values, one `content-length` that
    is `body`'s) then one `http.response.body` would, and end the request as they would; or False
    (nothing written) when `send` is not a request of ingress's own server at its start (another server,
    a paused or closed connection, an access log to write): then the caller sends through ASGI."""
    cycle = getattr(send, "__self__", None)
    if type(cycle) is not RequestCycle:
        return False
    transport: Any = cycle.transport  # ingress's protocol puts a `HeadWithBody` there
    if (
        type(transport) is not HeadWithBody
        or cycle.response_started
        or cycle.disconnected
        or cycle.flow.write_paused
        or cycle.access_log
        or cycle.scope["method"] == "HEAD"
    ):
        return False
    global _defaults
    default_headers, defaults = cycle.default_headers, _defaults
    if defaults[0] is not default_headers:
        if any(name.lower() in _FRAMING for name, _ in default_headers):
            return False
        defaults = _defaults = (default_headers, b"".join(b"%s: %s\r\n" % (n.lower(), v) for n, v in default_headers))
    parts = [STATUS_LINE[status], defaults[1]]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    keep_alive = cycle.keep_alive
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", body)
    cycle.response_started, cycle.waiting_for_100_continue = True, False
    cycle.chunked_encoding, cycle.expected_content_length = False, 0
    # a whole answer, head and body: nothing to hold (a head held still leaves first); this
    # module's own transport, written without a method call
    if transport._held is not None:
        transport.release()
    transport._transport.write(b"".join(parts))
    cycle.response_complete = True
    wake = cycle.message_event
    wake.pending = True  # `wake.set()`, the call only when a `receive()` waits
    if wake.event is not None:
        wake.set()
    if not keep_alive:
        transport.close()
    cycle.on_response()
    return True


_FRAMING = frozenset((b"content-length", b"transfer-encoding", b"connection"))
"""Headers uvicorn acts on as it writes them: a default header among them takes the ASGI path."""
