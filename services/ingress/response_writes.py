"""A response's head and its body in one socket write.

uvicorn writes an answer's status line and headers (`http.response.start`) and then its body
(`http.response.body`) with one `transport.write` each, and uvloop sends each at once: two system
calls and two TCP segments per answer, each waking the client. `HeadWithBody` wraps the
connection's transport and holds a response head until the next write, which it joins (one
`writelines`, one `writev`), or until the end of the current turn of the event loop at the latest
(`call_soon`), so a head whose body comes later (an SSE stream) still leaves at once. Order is
kept: nothing written after a held head overtakes it.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["HeadWithBody"]

_HEAD = b"HTTP/1.1 "
"""How every response head uvicorn writes begins (`STATUS_LINE`)."""


class HeadWithBody:
    """`transport`, writing a response head together with what follows it (see the module)."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

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
