"""The streamable-HTTP kind: the server speaks MCP over HTTP POSTs (and an optional GET stream).

The SDK's transport runs the session; lean calls go as one POST each on a connection pool of their
own (`lean.lean_http_transport`, `http1.HttpPool`), with the session's id and headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx2
from mcp.client._transport import TransportStreams

from libs.common.contracts.config import ServerConfig

from ...answer_limits import answer_cutoff
from ..interface import Connector, SessionHooks
from .http_client import http_client
from .lean import LeanLink, lean_http_transport
from .lean_session import lean_session
from .mcp_session import McpConnector
from .watched_stream import WatchedReadStream

__all__ = ["connector", "open_streams"]


@asynccontextmanager
async def open_streams(
    name: str, config: ServerConfig, hooks: SessionHooks, on_lean: Callable[[LeanLink], None]
) -> AsyncIterator[TransportStreams]:
    """Open the session's HTTP transport.

    `hooks.auth` adds credentials to every request (an HTTP link over a client with an `auth` of its own
    sends nothing lean: the SDK's way signs each request). On the SDK's own path the answer cutoff bounds
    every answer body (`bounded_http`) and each server-sent event (`max_sse_event_size`)."""
    assert config.url is not None
    max_result = hooks.settings.max_result
    cutoff = answer_cutoff(max_result) if max_result is not None else None
    timeout = httpx2.Timeout(hooks.settings.connect_timeout, read=None)
    client = http_client(hooks.egress, dict(config.headers), timeout, hooks.auth, hooks.on_unauthorized, cutoff)
    try:
        lean = lean_http_transport(
            config.url,
            client,
            dict(config.headers),
            hooks.on_unauthorized,
            hooks.agents.on_log,
            max_result,
            hooks.egress,
        )
        async with lean as ((read_stream, write_stream), link):
            on_lean(link)
            yield WatchedReadStream(read_stream, hooks.on_end), write_stream
    finally:
        await client.aclose()


def connector(name: str, config: ServerConfig, hooks: SessionHooks) -> Connector:
    return McpConnector(name, config, hooks, open_streams, lean_session)
