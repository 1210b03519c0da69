"""An MCP server's sessions, over the official SDK's `Client`: what the stdio, streamable-HTTP and SSE kinds share.

Each kind only opens its transport's streams (`OpenStreams`); this module runs the session on them and
answers the `UpstreamSession` interface.

The SDK's transports and session are anyio context managers whose cancel scopes must be entered
and exited by the same task: the owning `Upstream`'s connection task enters `McpConnector.open()`
and holds it for the session's life. Calls come from many other tasks and only touch the session
object, which multiplexes them over the one connection.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any

import anyio
import mcp_types as types
from mcp import Client
from mcp.client._transport import TransportStreams
from mcp.client.session import ClientSession
from mcp.shared.dispatcher import ProgressFnT
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.messages import CallOutcome, ToolCall, UpstreamRequest
from libs.common.runtime.package_version import bastion_version

from ...agents import ActiveCall, AgentLink
from ...error_mapping import describe_exception
from ..deadlines import Deadlines
from ..interface import CallContext, Listing, SessionHooks, SubscriptionStyle
from .lean import LeanLink
from .mcp_calls import ping, send_tool_call, send_upstream_request
from .mcp_changes import ChangeListener
from .mcp_listing import LIST_CHANGED, list_everything

__all__ = ["MakeSession", "McpConnector", "McpSession", "OpenStreams"]

log = logging.getLogger(__name__)

_CLIENT_INFO = types.Implementation(name="bastion", version=bastion_version())

OpenStreams = Callable[
    [str, ServerConfig, SessionHooks, Callable[[LeanLink], None]], AbstractAsyncContextManager[TransportStreams]
]
"""(name, config, hooks, on_lean) -> one MCP transport's read and write streams for the SDK session;
it hands `on_lean` the link lean calls are sent on (`stdio.open_streams`, ...)."""


MakeSession = Callable[[str, ClientSession, SessionHooks, ChangeListener, LeanLink | None], "McpSession"]
"""(name, SDK session, hooks, listener, lean link) -> the session calls go on (`McpSession`, or a kind's own)."""


class McpConnector:
    """Opens sessions to one MCP server over the transport `open_streams` opens."""

    def __init__(
        self,
        name: str,
        config: ServerConfig,
        hooks: SessionHooks,
        open_streams: OpenStreams,
        make_session: MakeSession | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._hooks = hooks
        self._open_streams = open_streams
        self._make_session: MakeSession = make_session or McpSession
        self._mode = config.protocol
        """How the next connect negotiates. "auto" opens with a `server/discover` probe, which some old
        servers (mcp <= 1.8 over stdio and SSE) answer by dropping the connection; after a failed
        connect in auto mode the next attempt uses the handshake, and the attempt after that auto
        again, so a transient failure never pins a modern server to the old protocol."""
        self._listener = ChangeListener(name, hooks.on_list_changed, hooks.agents.on_resource_updated)
        """Kept across sessions: the resource filter agents asked for outlives a reconnect."""

    def attempt_failed(self) -> None:
        if self.config.protocol == "auto":
            self._mode = "legacy" if self._mode == "auto" else "auto"

    @asynccontextmanager
    async def open(self) -> AsyncIterator[McpSession]:
        hooks = self._hooks
        links: list[LeanLink] = []
        agents = hooks.agents
        client = Client(
            self._open_streams(self.name, self.config, hooks, links.append),
            cache=None,
            message_handler=self._on_message,
            client_info=_CLIENT_INFO,
            mode=self._mode,
            logging_callback=agents.on_log,
            sampling_callback=agents.sampling,
            elicitation_callback=agents.elicitation,
            list_roots_callback=agents.roots,
        )
        async with client:
            session = self._make_session(self.name, client.session, hooks, self._listener, links[-1] if links else None)
            await session.resubscribe()
            yield session

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, LIST_CHANGED):
            self._hooks.on_list_changed()
        elif isinstance(message, types.ResourceUpdatedNotification):
            await self._hooks.agents.on_resource_updated(str(message.params.uri))


class McpSession:
    """One live MCP session (`UpstreamSession`)."""

    def __init__(
        self,
        name: str,
        session: ClientSession,
        hooks: SessionHooks,
        listener: ChangeListener,
        lean_link: LeanLink | None,
    ) -> None:
        self.name = name
        self.client_session = session
        self._hooks = hooks
        self._agents: AgentLink = hooks.agents
        self._listener = listener
        self.lean_link = lean_link
        """The session's link for lean `tools/call` sends (streamable HTTP: `lean.py`; stdio and
        SSE: `lean_stdio.py`)."""
        self._deadlines = Deadlines()
        """The deadlines of the calls on this session, on shared timers."""

    @property
    def protocol_version(self) -> str | None:
        return self.client_session.protocol_version

    @property
    def modern(self) -> bool:
        return self.client_session.protocol_version in MODERN_PROTOCOL_VERSIONS

    @property
    def subscription_style(self) -> SubscriptionStyle:
        """A 2026-07-28 session has no `resources/subscribe`: its change stream's filter is updated."""
        if self.modern:
            return "filter" if ChangeListener.supports_resource_subscriptions(self.client_session) else "none"
        return "requests"

    async def list(self) -> Listing:
        return await list_everything(self.client_session, self.name)

    async def ping(self, within: float) -> str | None:
        return await ping(self.client_session, within)

    async def call_tool(self, call: ToolCall, ctx: CallContext) -> CallOutcome:
        active = ctx.active
        progress = self._progress(active)
        return await send_tool_call(
            self.client_session,
            call,
            ctx.deadline,
            ctx.budget,
            deadlines=self._deadlines,
            server=self.name,
            on_stale=self._hooks.on_list_changed,  # 2026-07-28: our copy of the tool's schema is stale
            progress=progress,
            ask=partial(self._agents.answer, active) if active is not None else None,
            # progress is matched by the token the SDK's dispatcher gives its own requests
            lean=self.lean_link if progress is None and ctx.lean else None,
        )

    async def request(self, request: UpstreamRequest, ctx: CallContext) -> CallOutcome:
        active = ctx.active
        return await send_upstream_request(
            self.client_session,
            request,
            ctx.deadline,
            ctx.budget,
            deadlines=self._deadlines,
            server=self.name,
            progress=self._progress(active),
            ask=partial(self._agents.answer, active) if active is not None else None,
        )

    async def follow(self, uris: Iterable[str], within: float) -> bool:
        return await self._listener.subscribe_to(uris, within)

    async def run(self) -> None:
        if self.modern:
            await self._listener.run(self.client_session)

    async def resubscribe(self) -> None:
        """A new session knows nothing of the old one's resource subscriptions.

        (2026-07-28 sessions carry them on the change stream instead)."""
        if self.modern:
            return
        timeout = self._hooks.settings.connect_timeout
        for uri in list(self._hooks.subscriptions):
            try:
                with anyio.fail_after(timeout):
                    await self.client_session.send_request(
                        types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri)), types.EmptyResult
                    )
            except Exception as exc:
                log.warning("upstream %s: re-subscribing to a resource failed (%s)", self.name, describe_exception(exc))

    def _progress(self, active: ActiveCall | None) -> ProgressFnT | None:
        if active is None or active.progress_token is None or active.stream is None:
            return None
        agents = self._agents

        async def forward(progress: float, total: float | None, message: str | None) -> None:
            await agents.progress(active, progress, total, message)

        return forward
