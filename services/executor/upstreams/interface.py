"""The one interface between the executor and an upstream server of any kind.

`Upstream` (`upstream.py`) keeps every server the same way: a connection task that reconnects with
backoff, the listing it publishes, health checks, the circuit breaker; the call path (`call_path`)
calls every kind the same way: argument checks, the breaker, retries.
What differs by kind is only how a session is opened and spoken to, and that is behind two small
protocols here:

- a `Connector`, made once per configured server by its kind's factory in `registry.KINDS` and kept
  across reconnects, opens sessions (`open()`);
- an `UpstreamSession` is one live session: it lists what the server offers (`list`), answers a
  health check (`ping`), runs a `tools/call` (`call_tool`) and the other routed requests
  (`request`: prompts, resources, completions), follows resources when the kind can (`follow`), and
  does its own background work for its life (`run`).

Nothing here assumes an MCP `ClientSession` underneath: the stdio, streamable-HTTP and SSE kinds
share one MCP implementation (`mcp_session.py`); a REST adapter (OpenAPI) answers the same calls
from its own HTTP requests. A new kind is one module with a factory, and one entry in
`registry.KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, fields
from typing import Any, Final, Literal, Protocol

import httpx2

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.messages import CallOutcome, ToolCall, UpstreamRequest
from libs.common.settings import ExecutorSettings
from libs.common.web.egress_rules import EgressRules

from ..agents import ActiveCall, AgentLink
from .last_words import LastWords
from .mcp.stdio_sandbox import StdioRoot

__all__ = [
    "CallContext",
    "Connector",
    "ConnectorFactory",
    "Features",
    "Listing",
    "SessionHooks",
    "SubscriptionStyle",
    "UpstreamSession",
    "UpstreamSettings",
]


@dataclass(frozen=True, slots=True)
class Features:
    """What a server offers besides tools, as wire JSON for the catalog.

    Its capabilities, prompts, resources and resource templates."""

    capabilities: dict[str, Any] = field(default_factory=dict)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    resource_templates: list[dict[str, Any]] = field(default_factory=list)
    withheld_prompts: list[str] = field(default_factory=list)
    """Prompts the interceptors keep out of `prompts` but answer for by name (pinning: quarantined)."""
    withheld_templates: list[str] = field(default_factory=list)
    """Resource templates (`uriTemplate`) kept out of `resource_templates` but answered for: a read
    of a URI under one is routed, so the executor refuses it naming the approval it waits for."""
    skills: list[dict[str, Any]] = field(default_factory=list)
    """The server's skills (`skills/list` entries, upstream URIs), published in its catalog."""
    apps: list[dict[str, Any]] = field(default_factory=list)
    """The server's MCP Apps as read when listed (`mcp.app_listing`), for pinning only: not published."""

    def published(self) -> dict[str, Any]:
        """The features as the server's catalog entry carries them (`ServerCatalog`): all but `apps`."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "apps"}


@dataclass(frozen=True, slots=True)
class Listing:
    """Everything one server lists, as wire JSON.

    Its tools (before `ServerConfig.tools` narrows them) and its other features."""

    tools: list[dict[str, Any]] = field(default_factory=list)
    features: Features = Features()
    withheld: tuple[str, ...] = ()
    """Tools the interceptors keep out of `tools` but answer for by name (`InterceptedListing.withheld`)."""
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Tool name -> its other stable names, which Cedar policies judge it under too (`CatalogTool.aliases`):
    an OpenAPI operation's operationId, the names pinning saw it under before an approved rename."""


_SAME_NAMED: Final = (
    "connect_timeout",
    "health_interval",
    "drift_interval",
    "catalog_heartbeat",
    "lean_calls",
    "validation_values",
)
"""The `UpstreamSettings` that are the `ExecutorSettings` of the same name, unchanged."""


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    """What every upstream of one executor is kept and called with (`ExecutorSettings`, docs/configuration.md)."""

    connect_timeout: float = 30.0
    """Seconds a connection attempt (and a forced re-listing) may take."""
    max_backoff: float = 30.0
    """The longest pause between reconnection attempts."""
    health_interval: float = 15.0
    """An idle session is pinged after this many seconds."""
    drift_interval: float = 0.0
    """Seconds between scheduled re-listings (0: none): an upstream that changes without announcing it."""
    catalog_heartbeat: float = 10.0
    """A ready server's catalog entry is written again this often (`catalog_publisher`)."""
    lean_calls: bool = True
    """Send `tools/call` the session's lean way where it has one (`BASTION_LEAN_CALLS`)."""
    max_result: int | None = None
    """`BASTION_MAX_RESULT_BYTES`: answers are not read far past it (`answer_limits`)."""
    egress_allowed: tuple[str, ...] = ()
    """Non-public hosts every server may reach (`egress.allow_private_hosts`), besides its own."""
    stdio_root: StdioRoot | None = None
    """Where a stdio server's sandbox keeps its working folder (`ExecutorSettings.stdio_root`)."""
    validation_values: bool = False
    """`BASTION_VALIDATION_VALUES`: a refusal of arguments quotes their values to the agent."""

    @classmethod
    def of(cls, settings: ExecutorSettings, stdio_root: StdioRoot) -> UpstreamSettings:
        """The limits as configured: the executor setting of the same name, but for the four named here."""
        return cls(
            max_backoff=settings.reconnect_max_backoff,
            max_result=settings.max_result_bytes,
            egress_allowed=tuple(settings.egress.allow_private_hosts),
            stdio_root=stdio_root,
            **{name: getattr(settings, name) for name in _SAME_NAMED},
        )


@dataclass(slots=True)
class SessionHooks:
    """What every kind is given by the `Upstream` that owns it: limits, and where to report."""

    settings: UpstreamSettings
    """Its limits: `connect_timeout`, `max_result`, `stdio_root`."""
    agents: AgentLink
    """Routes what the server sends during a call (progress, logs, requests to the agent) to that call's agent."""
    on_end: Callable[[], None]
    """The server's side of the session ended: reconnect now, not at the next failed call."""
    on_list_changed: Callable[[], None]
    """The server's listing changed (or a call found our copy stale): list it again."""
    on_unauthorized: Callable[[], None] = lambda: None
    """The server answered HTTP 401."""
    auth: httpx2.Auth | None = None
    """Credentials added to every HTTP request (the upstream's OAuth tokens, `oauth_tokens.py`)."""
    subscriptions: Mapping[str, set[str]] = field(default_factory=dict)
    """Resource URI -> agent sessions following it through this executor (a new session restores them)."""
    last_words: LastWords = field(default_factory=LastWords)
    """Where a kind keeps what the server said about itself (a stdio child's stderr), for its status."""
    egress: EgressRules = field(default_factory=EgressRules)
    """Where its HTTP connections may go: public addresses, and the hosts its owner allowed
    (`libs.common.contracts.egress`)."""


@dataclass(slots=True)
class CallContext:
    """One call's limits and its way back to the agent."""

    deadline: float
    """Event-loop time by which the answer is due."""
    budget: float
    """Seconds the call may take (for the message of a timeout)."""
    active: ActiveCall | None = None
    """The agent's side of the call (progress, logs, input requests), None for bookkeeping requests."""
    lean: bool = True
    """The session may send it its fastest way (`BASTION_LEAN_CALLS`)."""


SubscriptionStyle = Literal["none", "requests", "filter"]
"""How a session follows resources: not at all; one `resources/subscribe` per URI (handshake-era
MCP); or one filter naming every URI (`follow`, 2026-07-28 MCP)."""


class UpstreamSession(Protocol):
    """One live session to a server, usable from any task while its `Connector.open()` is entered."""

    @property
    def protocol_version(self) -> str | None:
        """What the session negotiated (None for kinds without one)."""
        ...

    @property
    def subscription_style(self) -> SubscriptionStyle: ...

    async def list(self) -> Listing:
        """Every tool and feature the server offers now, every page."""
        ...

    async def ping(self, within: float) -> str | None:
        """None when the server answered within `within` seconds, else why not."""
        ...

    async def call_tool(self, call: ToolCall, ctx: CallContext) -> CallOutcome:
        """Run one `tools/call` (arguments already checked) and map what happens to an outcome."""
        ...

    async def request(self, request: UpstreamRequest, ctx: CallContext) -> CallOutcome:
        """Run one routed request other than `tools/call`.

        (`prompts/get`, `resources/read`, `completion/complete`, and with the "requests" style
        `resources/(un)subscribe`)."""
        ...

    async def follow(self, uris: Iterable[str], within: float) -> bool:
        """The "filter" style: want updates for exactly `uris` from now on.

        True once the server acknowledged it (within `within` seconds)."""
        ...

    async def run(self) -> None:
        """Background work for the session's life (a change stream); returns at once if none."""
        ...


class Connector(Protocol):
    """How one configured server is reached. State that outlives one session lives here."""

    def open(self) -> AbstractAsyncContextManager[UpstreamSession]:
        """A new session, closed (a stdio child stopped and reaped) when the context exits."""
        ...

    def attempt_failed(self) -> None:
        """The last `open()` did not lead to a ready session (a kind may try differently next)."""
        ...


ConnectorFactory = Callable[[str, ServerConfig, SessionHooks], Connector]
"""(server name, its configuration, hooks) -> its connector: one entry of `registry.KINDS`."""
