"""A bound on what the SDK's HTTP transports read of one answer.

The SDK reads a JSON answer whole (`response.aread()`), whatever its size, and bounds only each
server-sent event (`max_sse_event_size`). Lean sends have their own bound (`lean.HttpLink._body`);
this one covers everything else sent over the SDK's httpx2 client: discovery, `resources/read`,
`prompts/get`, calls that relay progress, OAuth's own requests. A body longer than the limit (a
declared `content-length` over it, before anything is read) fails with `AnswerTooLong`, an
`httpx2.StreamError`: the SDK turns that into an error answer to the request at once ("Failed to
parse JSON response: ..."), so the request fails with a message naming the limit instead of the
executor buffering any size. Event streams are left to the per-event bound, which the executor sets
to the same limit (`streamable_http`, `sse`): a stream of small events may run for hours.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2

__all__ = ["AnswerTooLong", "BoundedTransport"]


class AnswerTooLong(httpx2.StreamError):
    """An answer's body is longer than the executor reads."""

    def __init__(self, limit: int, size: int | None = None) -> None:
        of = f" ({size:,} bytes)" if size is not None else ""
        super().__init__(
            f"the upstream's answer{of} is longer than {limit:,} bytes, the result limit "
            "(BASTION_MAX_RESULT_BYTES) plus room for its envelope; it was not read further"
        )
        self.limit = limit


class _BoundedBody(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, limit: int, declared: int | None) -> None:
        self._inner = inner
        self._limit = limit
        self._declared = declared

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._declared is not None and self._declared > self._limit:
            raise AnswerTooLong(self._limit, self._declared)
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise AnswerTooLong(self._limit)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class BoundedTransport(httpx2.AsyncBaseTransport):
    """`inner`, with every answer body but an event stream cut off past `limit` bytes."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        content_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type != "text/event-stream":
            declared = response.headers.get("content-length", "")
            stream = response.stream
            assert isinstance(stream, httpx2.AsyncByteStream)
            response.stream = _BoundedBody(stream, self._limit, int(declared) if declared.isdigit() else None)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
