"""The httpx2 client HTTP upstreams are reached with (streamable HTTP, SSE; the OpenAPI adapter's REST calls too).

Keep-alive pooling, TCP_NODELAY, connections only where the egress rules allow (`egress_guard`), answers
bounded (`bounded_http`), and a hook that hears every HTTP 401."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx2

from libs.common.web.egress_rules import EgressRules

from ..egress_guard import guarded_transport, proxied_hooks
from .bounded_http import BoundedTransport

__all__ = ["http_client"]

# Without TCP_NODELAY a keep-alive request can stall ~40 ms (Nagle vs. delayed ACK) whenever
# headers and body leave in separate writes; measured on every call against uvicorn servers.
_SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
_LIMITS = httpx2.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=30.0)


def http_client(
    rules: EgressRules,
    headers: dict[str, str] | None = None,
    timeout: httpx2.Timeout | None = None,
    auth: httpx2.Auth | None = None,
    on_unauthorized: Callable[[], None] | None = None,
    max_body: int | None = None,
) -> httpx2.AsyncClient:
    """The httpx2 client for HTTP and SSE upstreams.

    (The SDK's `McpHttpClientFactory` once `rules`, the server's egress rules, are bound).
    `on_unauthorized` hears of every HTTP 401: the SDK turns it into a generic error, and "needs
    credentials" is worth telling operators apart from "down". An answer body (not an event stream)
    longer than `max_body` fails its request (`bounded_http`)."""
    hooks: dict[str, list[Any]] = {}
    if on_unauthorized is not None:

        async def check(response: httpx2.Response) -> None:
            if response.status_code == 401:
                on_unauthorized()

        hooks["response"] = [check]
    if proxied := proxied_hooks(rules, blocking=False):
        hooks["request"] = proxied
    transport: httpx2.AsyncBaseTransport = guarded_transport(rules, socket_options=_SOCKET_OPTIONS, limits=_LIMITS)
    if max_body is not None:
        transport = BoundedTransport(transport, max_body)
    return httpx2.AsyncClient(
        headers=headers,
        timeout=timeout or httpx2.Timeout(30.0, read=None),
        auth=auth,
        transport=transport,
        event_hooks=hooks,
    )
