"""The interceptor interface: three hooks on every request an upstream gets, and on its listings.

Every request that reaches an upstream passes the executor (an agent's `tools/call`, the calls a
Code Mode script makes, the tool calls of the LLM side, `prompts/get`, `resources/read`,
`completion/complete`): the executor runs the configured interceptors, in order, at three points
(`chain.InterceptorChain`; docs/architecture.md, "Where to add a check on every call"):

- `before_call(call)`: before the upstream is called (once per request, however often it is
  retried). Sees the server, the tool (or prompt, resource), the arguments and the caller; may
  refuse (`raise Refused(...)`) or rewrite `call.arguments`.
- `after_result(call, result)`: on the parsed result, before it is encoded for the agent. Returns
  the result to pass on (the same, or a rewritten copy); may refuse (`raise Refused(...)`: the agent
  gets an error instead, and the call did run).
- `at_message(message)`: on everything else an upstream sends the agent (progress and log
  notifications, sampling and elicitation requests, resource updates, error text; the list is
  `channels.UPSTREAM_CHANNELS`). Returns the payload to forward; may refuse (withhold it).
- `at_listing(listing)`: on each server's tool, prompt, resource and template definitions when the
  executor lists it (on connect and on every change); may hide (remove) or annotate them. What it
  hides is neither published nor callable.

Each hook may record decisions (`call.decide(...)`, `listing.decide(...)`): a request's ride back
to ingress on its outcome and land in its audit row (`messages.InterceptorDecision`); a listing's
are logged. A decision names the rule and the kind of thing found, never the matched content.

Subclass `Interceptor` and override only the hooks you need: the chain calls an interceptor only at
the hooks it overrides, and with no interceptor on the calls the request path does nothing more
than read one attribute. `start(nc)` and `stop()` bracket an interceptor's life in the executor
(clients it needs, KV buckets it reads). An interceptor whose verdict on a listing changes without
the server changing (a person approved a pinned definition) calls `self.relist(server)`: the
executor lists that server again and publishes what the hooks leave of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from nats.aio.client import Client as NATS

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import Caller, InterceptorDecision, Routed

__all__ = [
    "Action",
    "InterceptedCall",
    "InterceptedListing",
    "InterceptedMessage",
    "Interceptor",
    "Refused",
    "Relist",
    "Where",
]

Action = Literal["block", "redact", "rewrite", "warn", "log", "hide"]
Where = Literal["arguments", "result", "definition"]
Relist = Callable[[str], None]
"""Lists the named server again (the executor's; a no-op until the chain is started)."""


def _no_relist(_server: str) -> None:
    return None


class Refused(Exception):
    """Raised by a hook to refuse the request (before the call) or withhold its result (after).

    The agent reads `message`, an error of `kind` (forbidden: the audit row says "denied"), and the chain
    records the "block" decision (`rule`, `detail`: never the matched content). A request refused before
    the call is not charged."""

    def __init__(
        self, message: str, *, rule: str, detail: str | None = None, kind: ErrorKind = ErrorKind.FORBIDDEN
    ) -> None:
        super().__init__(message)
        self.message = message
        self.rule = rule
        self.detail = detail
        self.kind = kind


@dataclass(slots=True)
class InterceptedCall:
    """One request on its way to an upstream, as every hook of the chain sees it."""

    server: str
    config: ServerConfig
    """The server's configuration (its pinning mode, say)."""
    method: str
    """`tools/call`, `prompts/get`, `resources/read`, `resources/subscribe`, `completion/complete`, ..."""
    name: str
    """What grants name: the tool's own (upstream) name, or `prompt:<name>`, `resource:<uri>`."""
    arguments: dict[str, Any]
    """`tools/call`: its arguments; any other request: its params (without `_meta`). Assign a new
    dict to rewrite them; the upstream gets what is here after the last `before_call`."""
    caller: Caller
    """Who is calling: key, user, team, customer."""
    request: Routed = field(repr=False)
    """The request as it came (read-only: rewrite `arguments` instead)."""
    decisions: list[InterceptorDecision] = field(default_factory=list)

    def decide(self, interceptor: str, rule: str, action: Action, where: Where, detail: str | None = None) -> None:
        """Record a decision for this request's audit row (never the matched content in `detail`)."""
        self.decisions.append(
            InterceptorDecision(interceptor=interceptor, rule=rule, action=action, where=where, detail=detail)
        )


@dataclass(slots=True)
class InterceptedMessage:
    """Something an upstream sends an agent outside a result (`channels.UPSTREAM_CHANNELS`).

    A notification, a request to the agent, an error's text."""

    server: str
    channel: str
    """The method (`notifications/progress`, `elicitation/create`, ...) or `error`."""
    payload: dict[str, Any]
    """Its params as wire JSON (an error: `{"message": ...}`)."""
    caller: Caller | None = None
    """Whose call it is sent during; None for what belongs to no call (a resource update)."""


@dataclass(slots=True)
class InterceptedListing:
    """One server's definitions as the executor is about to publish them, as `at_listing` sees them.

    Hooks filter the lists in place or assign new ones (wire JSON, as the server sent them)."""

    server: str
    config: ServerConfig
    tools: list[dict[str, Any]]
    prompts: list[dict[str, Any]]
    resources: list[dict[str, Any]]
    resource_templates: list[dict[str, Any]]
    decisions: list[InterceptorDecision] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)
    """Tools (upstream names) a hook took out of the lists but still answers for when called by name,
    so the caller learns why (pinning: the approval a quarantined tool waits for) rather than that
    no such tool exists."""
    withheld_prompts: list[str] = field(default_factory=list)
    """The same for prompts (their upstream names)."""
    withheld_templates: list[str] = field(default_factory=list)
    """The same for resource templates (their `uriTemplate`): reads of URIs under one are routed."""
    credentials: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """(kind, name) -> the definition with its credentials redacted, for each listed tool, prompt or
    template that carries one (`definition_secrets`): pinning quarantines it until an owner approves."""
    skills: list[dict[str, Any]] = field(default_factory=list)
    """The server's skills (`skills/list` entries): pinning decides them by their manifest."""
    apps: list[dict[str, Any]] = field(default_factory=list)
    """The server's MCP Apps as read (`mcp.app_listing.app_definition`): pinning decides them; a
    quarantined one is taken out of `resources` and its reads are refused."""
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Tool name -> its other stable names (`Listing.aliases`); pinning adds the names a tool carried
    before a rename."""
    user: str | None = None
    """Set when this is one user's own session to a per-user server: their listing, not the server's whole one."""

    def decide(self, interceptor: str, rule: str, action: Action, detail: str | None = None) -> None:
        """Record a decision about a definition (logged by the executor)."""
        self.decisions.append(
            InterceptorDecision(interceptor=interceptor, rule=rule, action=action, where="definition", detail=detail)
        )


class Interceptor:
    """Base of every interceptor: each hook passes everything on unchanged until overridden."""

    name: ClassVar[str] = "interceptor"
    """Names the interceptor in decisions and logs."""
    relist: Relist = staticmethod(_no_relist)
    """Set by the chain when it starts the interceptor: list a server again."""

    async def start(self, nc: NATS) -> None:
        """The executor is connected (`nc`: its NATS client, for KV reads and writes): open what the hooks need.

        Called before the first listing or call this interceptor sees."""

    async def stop(self) -> None:
        """The executor stops, or replaced this interceptor: close what `start` opened."""

    async def before_call(self, call: InterceptedCall) -> None:
        """Before the upstream is called: raise `Refused` to refuse, assign `call.arguments` to rewrite."""

    after_result_methods: ClassVar[frozenset[str] | None] = None
    """The methods whose results `after_result` reads (None: every one): the chain runs it for no other, so a
    hook that only acts on a few costs the rest nothing."""

    async def after_result(self, call: InterceptedCall, result: dict[str, Any]) -> dict[str, Any]:
        """On the result (wire JSON) before it is encoded for the agent.

        Return it, or a rewritten copy (never change `result` in place: it may be shared); raise
        `Refused` to withhold it."""
        return result

    async def at_listing(self, listing: InterceptedListing) -> None:
        """On a server's definitions before they are published: remove what must be hidden."""

    async def at_message(self, message: InterceptedMessage) -> dict[str, Any]:
        """On what an upstream sends the agent outside a result, before it is forwarded.

        Progress, logs, requests to the agent, resource updates, errors: return the payload, or a
        rewritten copy; raise `Refused` to withhold it (a request to the agent is then answered with an
        error)."""
        return message.payload
