"""The console's MCP client side.

One connection to an MCP endpoint with the official SDK, its failures as one readable line. Used to test
a remote server before it is saved (`probe`) and to call tools as a virtual key through the gateway's own
`/mcp` (`playground`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import httpx2

from libs.common.web.egress_rules import EgressRules
from libs.common.web.guarded_http import guarded_transport, shared_tls

if TYPE_CHECKING:
    from mcp import Client

__all__ = ["MAX_TOOLS_PAGES", "connected", "failure", "list_all_tools"]

MAX_TOOLS_PAGES = 50
_MAX_ERROR_CHARS = 300


def _client(
    rules: EgressRules | None,
    headers: dict[str, str] | None = None,
    timeout: httpx2.Timeout | float | None = None,
    auth: httpx2.Auth | None = None,
) -> httpx2.AsyncClient:
    """An httpx2 client connecting only where `rules` allow.

    (`libs.common.web.guarded_http`), with no environment proxy (which would resolve names itself); any
    address when `rules` is None."""
    if rules is None:
        return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth, verify=shared_tls())
    transport = guarded_transport(rules.addresses, trust_env=False)
    return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth, transport=transport, trust_env=False)


@contextlib.asynccontextmanager
async def connected(
    url: str,
    headers: dict[str, str],
    sse: bool = False,
    read_seconds: float = 15.0,
    rules: EgressRules | None = None,
    extensions: Sequence[Any] = (),
) -> AsyncIterator[Client]:
    """An initialized client session with `url` (streamable HTTP, or the legacy HTTP+SSE transport).

    With `rules`, every connection (redirects included) goes only where they allow; `extensions` are
    the protocol extensions the client declares (streamable HTTP only)."""
    # the SDK is imported on the first probe or playground call: building its protocol models costs
    # the admin process about 0.4 CPU-seconds at every start otherwise
    from mcp import Client
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    if sse:
        legacy = sse_client(
            url,
            headers=headers,
            timeout=read_seconds,
            sse_read_timeout=read_seconds,
            httpx_client_factory=lambda headers=None, timeout=None, auth=None: _client(rules, headers, timeout, auth),
        )
        async with Client(legacy) as client:
            yield client
        return
    async with _client(rules, headers, read_seconds) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, read_timeout_seconds=read_seconds, extensions=list(extensions) or None) as client:
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
    """One line for a failed connection.

    The innermost cause, the URL (which may carry a token in its query) replaced by `<url>`, at most 300
    characters."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).replace(url, "<url>").strip() or "no detail"
    line = f"{type(exc).__name__}: {' '.join(text.split())}"
    return line[:_MAX_ERROR_CHARS]
