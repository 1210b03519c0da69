"""Request-path messages (`messages`): a request routed to one upstream, and what travels beside it while it runs.

The head policy decides on, the `tools/call` and other requests the executor runs, the agent-bound
stream events and replies, cancellations and the bus's own notices. Serialized with orjson-backed
`model_dump_json` and parsed with `model_validate_json`: both run in pydantic-core, no Python loop.
Their outcome is in `messages_outcome`, policy's grants in `messages_policy`.
"""

from __future__ import annotations

import functools
import operator
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, Field, model_validator

from libs.common.contracts.messages_base import BusMessage, Caller, new_id
from libs.common.contracts.messages_outcome import CallOutcome

__all__ = [
    "BusMoved",
    "CancelCall",
    "CancelExecution",
    "ClientReply",
    "ResourceUpdated",
    "Routed",
    "RoutedHead",
    "RoutedSession",
    "StreamEvent",
    "ToolCall",
    "UpstreamRequest",
]


class RoutedHead(BusMessage):
    """What every request routed to one upstream carries for deciding it, and all policy reads of one.

    (`ToolCall` and `UpstreamRequest` extend it): who, where, and until when. Policy forwards the same
    bytes, and pydantic skips the JSON a model does not name, so arguments and params are never parsed
    there (half the parse of a small call, and of a large one, measured)."""

    id: str = Field(default_factory=new_id)
    caller: Caller
    server: str
    tool: str | None = None
    """`ToolCall`: the upstream's own tool name, what grants, prices and rate limits name."""
    target: str | None = None
    """`UpstreamRequest`: what grants are checked against, in the `server/<target>` space:
    `prompt:<name>` or `resource:<uri>` (see docs/access-control.md)."""
    include_servers: list[str] | None = None
    """`X-Bastion-Include-Servers` of the request, if given: it can only narrow what the key allows."""
    include_tools: list[str] | None = None
    """`X-Bastion-Include-Tools` of the request, if given."""
    timeout: float
    """Seconds the caller will wait; the executor gives up slightly earlier."""
    sent_at: float = Field(default_factory=time.time)
    deadline: float = 0.0
    """Unix time after which ingress no longer waits for the answer (`sent_at + timeout` unless
    given): every hop drops the request unrun once it has passed, so one ingress gave up on never
    reaches the upstream afterwards. Hops compare it with their own clock (keep clocks in sync)."""

    @model_validator(mode="after")
    def _default_deadline(self) -> RoutedHead:
        if not self.deadline:
            # what pydantic's `__setattr__` does for a field (its handler's two lines), without its two calls:
            # this runs for every routed request built or parsed
            self.__dict__["deadline"] = self.sent_at + self.timeout
            self.__pydantic_fields_set__.add("deadline")
        return self

    @property
    def granted_as(self) -> str:
        """The name grants are checked against in the `server/...` space."""
        return self.tool or self.target or ""

    def decision(self) -> tuple[object, ...]:
        """What policy's allow decision for this request depends on, besides policy's own state.

        The whole caller, the server, the target and the narrowing headers. A `Grant` is made for exactly
        this (its MAC covers it, requesters and executors key their grants by it)."""
        c = self.caller
        return (
            _field_values(type(c))(c),
            self.server,
            self.granted_as,
            tuple(self.include_servers) if self.include_servers is not None else None,
            tuple(self.include_tools) if self.include_tools is not None else None,
        )


@functools.cache
def _field_values(model: type[BaseModel]) -> Callable[[BaseModel], tuple[object, ...]]:
    """A model's field values as a tuple, in field order.

    Once per call, so one C getter rather than a generator (and pydantic's `model_fields` descriptor) per
    call, 1.4 -> 0.5 µs."""
    names = tuple(model.model_fields)
    if len(names) == 1:  # attrgetter of one name returns the value, not a tuple
        return lambda item: (getattr(item, names[0]),)
    return operator.attrgetter(*names)


class _Routed(RoutedHead):
    """What the executor needs besides the head, for any routed request."""

    trace_id: str | None = None
    stream: str | None = None
    """Subject of the agent's open response stream (an SSE answer to its POST), when it has one.
    The executor publishes `StreamEvent`s there while the request runs: progress and log
    notifications, and requests the upstream makes of the agent (sampling, elicitation, roots)."""
    client: list[str] = Field(default_factory=list)
    """Client capabilities the agent declared that an upstream may ask it for:
    "sampling", "elicitation", "roots"; or "input_required" for a 2026-07-28 agent, which resolves
    a 2026-07-28 upstream's `input_required` results itself (the executor does it for the others)."""
    log_level: str | None = None
    """The lowest log level the agent wants forwarded on its stream (2026-07-28 upstreams send log
    messages only for requests that ask for them)."""
    version: str | None = None
    """The agent's protocol revision: the executor shapes the result for it (`results.shape_result`)
    and ingress passes it on untouched. None (a Code Mode script's call): the result as it came, less
    the upstream's own `serverInfo` stamp (`results.unstamped`)."""


class ToolCall(_Routed):
    """ingress -> policy -> executor: one `tools/call`."""

    tool: str
    name: str
    """The namespaced name the agent used."""
    arguments: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] | None = None
    """The request's `_meta` minus the per-request protocol envelope (progress tokens, trace context)."""
    extra: dict[str, Any] | None = None
    """Other `params` fields the agent sent besides name/arguments/_meta (2026-07-28
    `inputResponses` and `requestState`), forwarded as they are."""
    initiator: Literal["agent", "app"] = "agent"
    """"app": a host calls, for its app, a tool MCP Apps keeps from the model (docs/mcp-apps.md);
    Cedar policies read it as `context.initiator`."""
    arguments_blob: str | None = None
    """Set when the arguments were too large for one NATS message: the object (`subjects.OBJ_BLOBS`)
    holding them as JSON; `arguments` is then empty (`libs.common.bus.blobs`)."""

    refunded_when_lost: ClassVar[bool] = True
    """A tool call may be charged by policy: one this side failed without an answer is refunded."""
    subscription: ClassVar[None] = None
    subscriber: ClassVar[None] = None

    rpc_method: ClassVar[str] = "tools/call"
    """The MCP method it runs: a class attribute, read several times a call with no getter to run."""

    if TYPE_CHECKING:  # what they are; below, what runs: read seven times a call, with no Python getter

        @property
        def tool_name(self) -> str | None:
            """The tool it runs: exposure, argument checks and retries apply to it."""

        @property
        def asked_for(self) -> str:
            """What it names upstream, for checks and logs: the tool."""

        @property
        def payload(self) -> dict[str, Any]:
            """What it asks of the upstream, as checks see it: the tool's arguments."""

        @property
        def agent_meta(self) -> Any:
            """The agent's `_meta` (its progress token)."""

    else:  # properties whose getter is a C `attrgetter`: nothing the profiler counts as a call
        tool_name = property(operator.attrgetter("tool"))
        asked_for = property(operator.attrgetter("tool"))
        payload = property(operator.attrgetter("arguments"))
        agent_meta = property(operator.attrgetter("meta"))

    def replace_payload(self, payload: dict[str, Any]) -> None:
        self.arguments = payload

    @property
    def offloadable(self) -> bool:
        """Its arguments may travel through the object store when too large for one message."""
        return bool(self.arguments)

    def describe(self) -> str:
        return f"tool {self.name!r}"

    def offloaded(self, blob: str) -> ToolCall:
        """This call with its arguments in the object store under `blob` (`offloadable`)."""
        return self.model_copy(update={"arguments": {}, "arguments_blob": blob})

    def send(self, session: RoutedSession, ctx: Any) -> Awaitable[CallOutcome]:
        """The session's call of this tool, for the caller to await.

        Returned, not awaited here: no coroutine of its own to create and resume, once a call."""
        return session.call_tool(self, ctx)


class UpstreamRequest(_Routed):
    """ingress -> policy -> executor.

    Any request routed to one upstream besides `tools/call` (`prompts/get`, `resources/read`,
    `resources/subscribe`, `completion/complete`, ...)."""

    method: str
    params: dict[str, Any] = Field(default_factory=dict)
    """Wire params with the upstream's own names (a prompt's un-namespaced name)."""
    target: str
    subscriber: str | None = None
    """`resources/(un)subscribe`: the agent session the subscription belongs to."""

    refunded_when_lost: ClassVar[bool] = False
    arguments_blob: ClassVar[None] = None
    offloadable: ClassVar[bool] = False

    @property
    def rpc_method(self) -> str:
        return self.method

    @property
    def tool_name(self) -> str | None:
        return None

    @property
    def subscription(self) -> str | None:
        """The resource URI of a `resources/(un)subscribe`.

        Bookkeeping shared by the agents following it, not a request each sends upstream."""
        uri = self.params.get("uri")
        if self.method in ("resources/subscribe", "resources/unsubscribe") and isinstance(uri, str):
            return uri
        return None

    @property
    def payload(self) -> dict[str, Any]:
        """What it asks of the upstream, as checks see it: its params without the `_meta` envelope."""
        return {k: v for k, v in self.params.items() if k != "_meta"}

    def replace_payload(self, payload: dict[str, Any]) -> None:
        meta = self.params.get("_meta")
        self.params = {**payload, "_meta": meta} if meta is not None else dict(payload)

    @property
    def agent_meta(self) -> Any:
        return self.params.get("_meta")

    @property
    def asked_for(self) -> str:
        """What it names upstream (`prompt:<name>`, `resource:<uri>`)."""
        return self.target

    def describe(self) -> str:
        return self.method

    def offloaded(self, blob: str) -> UpstreamRequest:
        raise TypeError(f"{self.method} params do not travel through the object store (`offloadable` is False)")

    def send(self, session: RoutedSession, ctx: Any) -> Awaitable[CallOutcome]:
        """The session's request, for the caller to await (`ToolCall.send`)."""
        return session.request(self, ctx)


Routed = ToolCall | UpstreamRequest
"""A request routed to one upstream: what differs between the kinds is on the classes themselves."""


class RoutedSession(Protocol):
    """What a routed request is sent over (`Routed.send`): the executor's upstream sessions."""

    async def call_tool(self, call: ToolCall, ctx: Any, /) -> CallOutcome: ...

    async def request(self, request: UpstreamRequest, ctx: Any, /) -> CallOutcome: ...


class StreamEvent(BusMessage):
    """executor -> the ingress holding an agent's response stream: one JSON-RPC message for the agent.

    A notification (`notifications/progress`, `notifications/message`) is published; a request
    (`sampling/createMessage`, `elicitation/create`, `roots/list`) is a NATS request whose reply
    subject waits for the agent's answer as a `ClientReply`."""

    method: str
    params: dict[str, Any] | None = None


class ClientReply(BusMessage):
    """ingress -> executor: the agent's answer to a `StreamEvent` request (wire result or error)."""

    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class CancelCall(BusMessage):
    """ingress -> every ingress: an agent cancelled its request `request_id` (in session `session`)."""

    key_id: str
    session: str
    request_id: str | int


class CancelExecution(BusMessage):
    """ingress -> every executor: abandon the call or request with this id."""

    id: str


class BusMoved(BusMessage):
    """A replica that holds calls (policy, executor, codemode) -> every requester.

    Its connection is back after it lost its NATS member `left` (`libs.common.bus.nats`); calls sent to
    it before, and not acknowledged, may be lost in that member (`libs.common.bus.relay`)."""

    role: str
    left: str
    """The member it lost (`host:port`), as its connection named it."""


class ResourceUpdated(BusMessage):
    """executor -> every ingress: an upstream said a subscribed resource changed."""

    server: str
    uri: str
