"""The SSE kind (HTTP+SSE, the 2024-11-05 transport).

Requests are POSTed to an endpoint the server names, answers come back on one long-lived event stream.

Lean calls write through the transport's own write stream (its POST, auth and redirects stay the
SDK's) and take their answers off the event stream before the SDK session sees them, as stdio's
off the pipe (`lean_stdio.StdioLink`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx2
from mcp.client._transport import TransportStreams
from mcp.client.sse import sse_client

from libs.common.contracts.config import ServerConfig

from ...answer_limits import answer_cutoff
from ..interface import Connector, SessionHooks
from .http_client import http_client
from .lean import LeanLink
from .lean_session import lean_session
from .lean_stdio import StdioLink
from .mcp_session import McpConnector
from .watched_stream import WatchedReadStream, WatchedWriteStream

__all__ = ["connector", "open_streams"]


@asynccontextmanager
async def open_streams(
    name: str, config: ServerConfig, hooks: SessionHooks, on_lean: Callable[[LeanLink], None]
) -> AsyncIterator[TransportStreams]:
    """Open the event stream.

    Answer bodies are bounded by the answer cutoff (`bounded_http`); the SDK's HTTP+SSE transport keeps
    its own 1 MiB per event."""
    assert config.url is not None
    cutoff = answer_cutoff(hooks.settings.max_result) if hooks.settings.max_result is not None else None
    on_unauthorized = hooks.on_unauthorized
    live = True

    def lost() -> None:
        """The session can send no more (its POST writer ended).

        End it now, so calls wait for a new one instead of failing. Only while this session is the
        upstream's own: never a later one."""
        if live:
            hooks.on_end()

    async def refused(response: httpx2.Response) -> None:
        # a 401 is the auth flow's to answer (it retries); any other error answer ends the SDK's writer
        if response.request.method == "POST" and response.status_code >= 400 and response.status_code != 401:
            lost()

    def client(
        headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None, auth: httpx2.Auth | None = None
    ) -> httpx2.AsyncClient:
        made = http_client(hooks.egress, headers, timeout, auth, on_unauthorized, cutoff)
        made.event_hooks["response"].append(refused)
        return made

    transport = sse_client(
        config.url,
        headers=dict(config.headers),
        timeout=hooks.settings.connect_timeout,
        # idle streams are normal (each call has its own timeout); the SDK hands this to httpx2.Timeout,
        # where None means no read timeout, though its annotation says float
        sse_read_timeout=None,  # type: ignore[arg-type]
        auth=hooks.auth,
        httpx_client_factory=client,
    )
    try:
        async with transport as (read_stream, write_stream):
            writes = WatchedWriteStream(write_stream, lost)
            link = StdioLink(writes, on_log=hooks.agents.on_log)
            on_lean(link)
            yield WatchedReadStream(read_stream, hooks.on_end, link), writes
    finally:
        live = False


def connector(name: str, config: ServerConfig, hooks: SessionHooks) -> Connector:
    return McpConnector(name, config, hooks, open_streams, lean_session)
