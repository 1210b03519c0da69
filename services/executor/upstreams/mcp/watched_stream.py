"""The read side of an MCP transport, watched: the owner hears when the server's side ends.

The SDK gives no event for "the server went away" (a stdio child exiting, an SSE stream
dropping): the session just stops receiving. `WatchedReadStream` wraps the read side and calls
back on end-of-stream so the owner reconnects at once instead of on the next failed call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from .lean_stdio import StdioLink

__all__ = ["WatchedReadStream", "WatchedWriteStream"]


class WatchedReadStream:
    """Delegates to the transport's read stream; reports end-of-stream once via `on_end`.

    With a stdio `lean` link, answers to its requests are handed to it instead of the SDK session."""

    def __init__(self, inner: Any, on_end: Callable[[], None], lean: StdioLink | None = None) -> None:
        self._inner = inner
        self._on_end = on_end
        self._lean = lean
        self._ended = False

    @property
    def last_context(self) -> Any:  # the dispatcher reads it duck-typed for HTTP transports
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        while True:
            try:
                message = await self._inner.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                self._end()
                raise
            if self._lean is None or not await self._lean.take(message):
                return message

    async def aclose(self) -> None:
        self._end()
        await self._inner.aclose()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            if self._lean is not None:
                self._lean.closed()
            self._on_end()

    def __aiter__(self) -> WatchedReadStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> WatchedReadStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class WatchedWriteStream:
    """Delegates to the transport's write stream; reports `on_lost` when a send finds it closed.

    The SDK's HTTP+SSE client POSTs from one writer task, which ends for good at the first POST that
    fails, while the event stream stays open: without this, every later request of the session would
    fail as "connection closed" until a health check noticed."""

    def __init__(self, inner: Any, on_lost: Callable[[], None]) -> None:
        self._inner = inner
        self._on_lost = on_lost

    async def send(self, item: Any) -> None:
        try:
            await self._inner.send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_lost()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def close(self) -> None:
        self._inner.close()

    async def __aenter__(self) -> WatchedWriteStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __getattr__(self, name: str) -> Any:  # statistics(), clone(), ... as the SDK may use them
        return getattr(self._inner, name)
