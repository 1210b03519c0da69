"""The console's MCP client side: one connection to an MCP endpoint with the official SDK, its
failures as one readable line. Used to test a remote server before it is saved (`probe`) and to
call tools as a virtual key through the gateway's own `/mcp` (`playground`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx2

from libs.common.guarded_http import shared_tls

if TYPE_CHECKING:
    from mcp import Client

__all__ = ["MAX_TOOLS_PAGES", "connected", "failure", "list_all_tools"]

MAX_TOOLS_PAGES = 50
_MAX_ERROR_CHARS = 300


@contextlib.asynccontextmanager
async def connected(
    url: str, headers: dict[str, str], sse: bool = False, read_seconds: float = 15.0
) -> AsyncIterator[Client]:
    """An initialized client session with `url` (streamable HTTP, or the legacy HTTP+SSE transport)."""
    # the SDK is imported on the first probe or playground call: building its protocol models costs
    # the admin process about 0.4 CPU-seconds at every start otherwise
    from mcp import Client
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    if sse:
        legacy = sse_client(url, headers=headers, timeout=read_seconds, sse_read_timeout=read_seconds)
        async with Client(legacy) as client:
            yield client
        return
    async with httpx2.AsyncClient(headers=headers, timeout=read_seconds, verify=shared_tls()) as http:
        async with Client(streamable_http_client(url, http_client=http), read_timeout_seconds=read_seconds) as client:
            yield client


async def list_all_tools(client: Client) -> list[dict[str, Any]]:
    """Every tool the session lists (each page, at most `MAX_TOOLS_PAGES`), as wire JSON."""
    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_TOOLS_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools += [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in page.tools]
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def failure(exc: BaseException, url: str) -> str:
    """One line for a failed connection: the innermost cause, the URL (which may carry a token in its
    query) replaced by `<url>`, at most 300 characters."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).replace(url, "<url>").strip() or "no detail"
    line = f"{type(exc).__name__}: {' '.join(text.split())}"
    return line[:_MAX_ERROR_CHARS]
