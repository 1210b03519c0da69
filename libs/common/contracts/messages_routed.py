"""Request-path messages (`messages`).

A routed request, what streams back while it runs, its outcome, and Code Mode's calls. Serialized with
orjson-backed `model_dump_json` and parsed with `model_validate_json`: both run in pydantic-core, no
Python loop.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages_base import BusMessage, Caller, Execution, GatewayError, InterceptorDecision, new_id

__all__ = [
    "MAX_CONDITION_ENTITIES",
    "MAX_CONDITION_POLICIES",
    "REFUNDED",
    "BusMoved",
    "CallOutcome",
    "CancelCall",
    "CancelExecution",
    "ClientReply",
    "CodeModeAnswer",
    "CodeModeCall",
    "Grant",
    "PairList",
    "PolicyCondition",
    "Refund",
    "ResourceUpdated",
    "Routed",
    "RoutedHead",
    "RoutedSession",
    "StreamEvent",
    "ToolCall",
    "UpstreamRequest",
    "VisibleTools",
    "VisibleToolsQuery",
    "decode_outcome",
    "encode_outcome",
    "pairs_digest",
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
            self.deadline = self.sent_at + self.timeout
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


MAX_CONDITION_POLICIES = 16_384
"""Bytes of per-call policies a grant may carry (`PolicyCondition`); a pair whose policies are longer
is decided by policy on every call."""
MAX_CONDITION_ENTITIES = 16_384


class PolicyCondition(BaseModel):
    """What a granted tool call must still pass on its own arguments.

    The per-call Cedar policies whose scope covers the caller and the tool, with the entities policy
    judged the pair over. The executor decides each call with them (`cedar_eval.condition_allows`); a
    call they do not plainly allow is answered as stale and asked of policy, which refuses it, parks it
    or has it confirmed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    """The policy set's version they come from."""
    policies: str = Field(max_length=MAX_CONDITION_POLICIES)
    """The policies and the baseline permit as a Cedar JSON policy set."""
    entities: str = Field(max_length=MAX_CONDITION_ENTITIES)
    """The caller's key and the tool (under each of its names) as Cedar JSON entities."""
    principal: str = Field(max_length=1024)
    """The key's name (`Key::"<name>"`)."""
    names: list[str] = Field(min_length=1, max_length=17)
    """The tool's names, its own first: a call is asked under each."""


class Grant(BaseModel):
    """Policy's decision that a caller may send one kind of request to one target, with nothing to count.

    `kind` is `EXEC_CALL` or `EXEC_REQUEST`, with one narrowing; ingress reuses it until `expires` (the
    `subjects.GRANT` header). `mac` is policy's HMAC over all of that and the
    price (`signing.WorkSigner.grant_mac`), so an executor can tell it from a forged one. A tool
    some per-call policy governs is granted with that policy as a `condition` the executor checks
    on every call: its arguments are decided per call, without a hop through policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    expires: float
    """Unix time the executors stop honouring it."""
    price: float | None = None
    """The call's price in USD (`CHARGED_USD`), None for an unpriced one: ingress sends it with
    each call, so the audit event's `cost_usd` is the same as for a call policy forwarded."""
    revisions: dict[str, int] = Field(default_factory=dict, max_length=8)
    """Bucket -> the KV revision policy's view held when it decided: ingress keeps the grant only
    when policy had applied every change ingress had seen (`tool_lists.answer_holds`)."""
    mac: str = Field(default="", max_length=64)
    condition: PolicyCondition | None = None
    """The per-call policies each call must pass (None: the decision holds for any arguments)."""


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
    and ingress passes it on untouched. None (a Code Mode script's call): the result as it came."""


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

    @property
    def rpc_method(self) -> str:
        return "tools/call"

    @property
    def tool_name(self) -> str | None:
        """The tool it runs: exposure, argument checks and retries apply to it."""
        return self.tool

    @property
    def asked_for(self) -> str:
        """What it names upstream, for checks and logs: the tool."""
        return self.tool

    @property
    def payload(self) -> dict[str, Any]:
        """What it asks of the upstream, as checks see it: the tool's arguments."""
        return self.arguments

    def replace_payload(self, payload: dict[str, Any]) -> None:
        self.arguments = payload

    @property
    def agent_meta(self) -> Any:
        """The agent's `_meta` (its progress token)."""
        return self.meta

    @property
    def offloadable(self) -> bool:
        """Its arguments may travel through the object store when too large for one message."""
        return bool(self.arguments)

    def describe(self) -> str:
        return f"tool {self.name!r}"

    def offloaded(self, blob: str) -> ToolCall:
        """This call with its arguments in the object store under `blob` (`offloadable`)."""
        return self.model_copy(update={"arguments": {}, "arguments_blob": blob})

    async def send(self, session: RoutedSession, ctx: Any) -> CallOutcome:
        return await session.call_tool(self, ctx)


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

    async def send(self, session: RoutedSession, ctx: Any) -> CallOutcome:
        return await session.request(self, ctx)


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


class CallOutcome(BusMessage):
    """executor or policy -> ingress: the result of a `ToolCall`, or why there is none.

    On the bus the result travels after the envelope as its own JSON (`encode_outcome`), so the
    receiver can pass it on without parsing it (`raw_result`); `result` is for producers that hold
    it as a dict, and `result_value()` for consumers that need one."""

    id: str
    result: dict[str, Any] | None = None
    """The upstream's result as wire JSON (camelCase), before it is encoded for the bus."""
    raw_result: bytes | None = Field(default=None, exclude=True, repr=False)
    """The result as JSON bytes, as `decode_outcome` found it after the envelope (never in the
    envelope itself): spliced into the agent's answer as it is."""
    is_error: bool = False
    """The result is a tool error (`isError`): the envelope says so, so the audit reads no result."""
    error: GatewayError | None = None
    decided_by: Literal["policy", "executor"]
    upstream_ms: float | None = None
    events: int = 0
    """`StreamEvent`s the executor sent to the call's stream before this outcome: ingress forwards
    that many before the result, so a late notification never follows the answer."""
    execution: Execution | None = None
    """Whether the upstream ran the request, as far as the service answering knows."""
    result_blob: str | None = None
    """Set when the result was too large for one NATS message: the object (`subjects.OBJ_BLOBS`)
    holding it as JSON; `result` is then None (`libs.common.bus.blobs`)."""
    cost_usd: float | None = None
    """What policy charged for the call (USD), read by the requester from policy's `Bastion-Charged-Usd`
    header (`relay.call_outcome`): policy relays the executor's bytes untouched. None: nothing priced."""
    policy_id: str | None = None
    """The Cedar policy that decided the call (its `@id`): the one that refused it, asked for
    approval, or `grants` for a call no policy forbade; None when no policy set applies."""
    approval_id: str | None = None
    """The approval the call waits for, or ran under (`libs.common.cedar.approvals`)."""
    approval_run: Literal["run", "replay"] | None = None
    """Under an approval: `run` when this call ran the approved call, `replay` when it got the kept
    outcome of an earlier run again (nothing ran). The audit row says which (`action`)."""
    ran_arguments: dict[str, Any] | None = None
    """Under an approval: the APPROVED arguments that ran (never those of the call collecting them),
    which the audit row records in place of the collecting call's."""
    interceptions: list[InterceptorDecision] = Field(default=[], max_length=64)
    """What the executor's interceptors decided on the way (refused, redacted, flagged ...): the
    requester copies it into the request's audit row. Empty when none acted. A plain default, not a
    `default_factory`: `model_construct` (the executor's hot path) asks pydantic whether a factory
    takes the validated data, an `inspect.signature` of `list` costing ~160 µs per outcome (measured,
    pydantic 2.14); an empty default is copied for each outcome instead."""

    def result_value(self) -> dict[str, Any] | None:
        """The result as a dict, parsed from `raw_result` when that is how it came."""
        if self.result is None and self.raw_result is not None:
            parsed = orjson.loads(self.raw_result)
            self.result = parsed if isinstance(parsed, dict) else None
        return self.result


REFUNDED: frozenset[ErrorKind] = frozenset(
    {
        ErrorKind.UPSTREAM_UNAVAILABLE,
        ErrorKind.UPSTREAM_TIMEOUT,
        ErrorKind.UPSTREAM_ERROR,
        ErrorKind.INVALID_ARGUMENTS,
        ErrorKind.UNKNOWN_TOOL,
        ErrorKind.GATEWAY_UNAVAILABLE,
        ErrorKind.GATEWAY_TIMEOUT,
        ErrorKind.INTERNAL,
    }
)
"""Outcomes after which a call's charge is refunded: the tool did not run (or the gateway cannot know
it did). A tool result with `isError` is a tool that ran, and stays charged."""


class Refund(BusMessage):
    """executor, ingress, codemode -> policy: give back what the call `id` was charged (at most once)."""

    id: str


def encode_outcome(outcome: CallOutcome) -> bytes:
    """The bus form of an outcome.

    Its envelope (JSON on one line), then, after a newline, the result's JSON (`raw_result`, or `result`
    encoded) when it has one."""
    raw = outcome.raw_result
    if raw is None and outcome.result is not None:
        raw = orjson.dumps(outcome.result)
    envelope = outcome.model_dump_json(exclude={"result"}).encode()
    return envelope if raw is None else envelope + b"\n" + raw


def decode_outcome(data: bytes) -> CallOutcome:
    """An outcome from its bus form (`encode_outcome`); the result stays bytes (`raw_result`).

    Raises `pydantic.ValidationError` when the envelope is not a `CallOutcome`."""
    envelope, newline, raw = data.partition(b"\n")  # compact JSON has no raw newline
    outcome = CallOutcome.model_validate_json(envelope)
    if newline:
        outcome.raw_result = raw
    return outcome


class VisibleToolsQuery(BusMessage):
    caller: Caller
    include_servers: list[str] | None = None
    include_tools: list[str] | None = None
    tools_digest: str = Field(max_length=64)
    """`PairList.digest` of the (server, tool) pairs asked about: a catalog's list is the same
    question every time, so it is named, not sent, while policy knows it."""
    tools: list[tuple[str, str]] | None = None
    """The pairs themselves: sent only when policy answered `unknown_list` (1,343 pairs are ~40 kB,
    which cost more on the bus and in pydantic than deciding them). Policy keeps a list under the
    digest it computes itself, never under the one it is told."""


class VisibleTools(BusMessage):
    allowed: list[int] = Field(default_factory=list)
    """Indexes into the query's pairs."""
    error: GatewayError | None = None
    unknown_list: bool = False
    """Policy does not hold the list `tools_digest` names: ask again with `tools`."""
    revisions: dict[str, int] = Field(default_factory=dict)
    """KV bucket -> the revision policy's view held when it answered (`BucketWatch.revision`): an
    asker whose own view of those buckets is no newer knows the answer holds until it sees a change."""


def pairs_digest(pairs: Sequence[tuple[str, str]]) -> str:
    """The name of a list of (server, name) pairs (`VisibleToolsQuery.tools_digest`)."""
    return hashlib.blake2b(orjson.dumps(pairs), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class PairList:
    """A list of (server, name) pairs with the digest a `bastion.policy.list` question names it by, computed once.

    (Per catalog revision, for a catalog's list)."""

    pairs: list[tuple[str, str]]
    digest: str

    @classmethod
    def of(cls, pairs: list[tuple[str, str]]) -> PairList:
        return cls(pairs, pairs_digest(pairs))


# ---------------------------------------------------------------- Code Mode


class CodeModeCall(BusMessage):
    """ingress -> codemode: one call of a Code Mode meta-tool (`libs.common.contracts.codemode.META_TOOLS`)."""

    id: str = Field(default_factory=new_id)
    trace_id: str | None = None
    caller: Caller
    tool: str
    """The meta-tool's name."""
    arguments: dict[str, Any] = Field(default_factory=dict)
    include_servers: list[str] | None = None
    include_tools: list[str] | None = None
    parent_id: str
    """`event_id` of the audit event ingress writes for this meta-tool call: the parent of every tool
    call the run makes."""
    timeout: float
    """Seconds ingress waits; each tool call of a run gets at most what is left of it."""


class CodeModeAnswer(BusMessage):
    """codemode -> ingress: the meta-tool's `CallToolResult` (wire JSON), or why there is none."""

    id: str
    result: dict[str, Any] | None = None
    error: GatewayError | None = None
    calls: int = 0
    """Tool calls the run made (each audited on its own with `parent_id`)."""
    authorize_urls: dict[str, str] = Field(default_factory=dict)
    """Server -> the caller's link to authorize it (per-user servers the run was refused by). Kept
    out of `result`, which the run's audit row records: ingress adds them to the agent's answer only."""
