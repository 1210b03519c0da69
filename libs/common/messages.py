"""Every NATS payload, as one pydantic model each.

Request-path messages (`ToolCall`, `CallOutcome`, ...) are serialized with orjson-backed
`model_dump_json` and parsed with `model_validate_json`: both run in pydantic-core, no Python loop.
MCP bodies inside them (tool definitions, call results) stay as the wire dicts of `mcp.types`.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .config import ServerConfig
from .entities import Budget, RateLimit
from .errors import ErrorKind
from .llm_config import AgentMode

__all__ = [
    "REFUNDED",
    "AuditBatch",
    "AuditEvent",
    "AuditKind",
    "AuditQuery",
    "AuditRows",
    "AuditVerdict",
    "AuditVerify",
    "BreakerStatus",
    "CallOutcome",
    "Caller",
    "CancelCall",
    "CancelExecution",
    "CatalogTool",
    "ClientReply",
    "CodeModeAnswer",
    "CodeModeCall",
    "Execution",
    "GatewayError",
    "KeyRecord",
    "Refund",
    "ResourceUpdated",
    "RoutedHead",
    "ServerCatalog",
    "ServerRecord",
    "StreamEvent",
    "TamperKind",
    "ToolCall",
    "UpstreamRequest",
    "VisibleTools",
    "VisibleToolsQuery",
    "audit_events",
    "decode_outcome",
    "encode_outcome",
    "new_id",
]

SCHEMA_VERSION = 1


def _fresh_prefix() -> None:
    global _prefix
    _prefix = os.urandom(8).hex()


_prefix = ""
_counter = itertools.count(1)
_fresh_prefix()
os.register_at_fork(after_in_child=_fresh_prefix)


def new_id() -> str:
    """32 hex digits, the shape of `uuid4().hex`, without `uuid4`'s system call per id (it reads
    `os.urandom`; several ids per call add up on the hot path): 64 random bits drawn once per
    process (again in a forked child), then a counter. Not the `random` module: tests and libraries
    seed its shared state (hypothesis does, per example), which would repeat ids, and a repeated
    batch id is dropped by JetStream as a duplicate. Ids are unique, not secret: nothing may use
    one as a credential."""
    return f"{_prefix}{next(_counter):016x}"


Execution = Literal["ran", "not_run", "may_have_run"]
"""Whether the upstream ran a request: it answered ("ran"), it was never sent ("not_run"), or the
gateway lost track after sending it, or cannot tell whether it was sent ("may_have_run")."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=False)
    v: int = SCHEMA_VERSION
    """Schema version of the envelope; consumers ignore fields they do not know."""


class Caller(BaseModel):
    """Who is calling: resolved by ingress from the bearer key or OAuth access token, never the secret itself."""

    key_id: str
    """The key's id, or `user:<id>` for an OAuth access token (`bastion_common.oauth.USER_CALLER_PREFIX`)."""
    key_name: str
    user_id: str | None = None
    """The user the request acts for: the OAuth access token's subject, or the user the key is bound
    to. Audit events name them as the actor; per-user upstream servers are called with this user's
    own credentials, never another's (docs/oauth.md)."""
    team_id: str | None = None
    customer_id: str | None = None
    """The key's owner, as its record says: audit events name them, so analysts slice by team and customer."""
    content_logging: bool = True
    """The key's `content_logging`: False keeps only sizes and sha256 of its arguments and results
    in audit events (docs/analytics.md)."""

    def owner(self) -> dict[str, str | None]:
        """The `user_id`, `team_id` and `customer_id` fields of this caller's audit events."""
        return {"user_id": self.user_id, "team_id": self.team_id, "customer_id": self.customer_id}


class GatewayError(BaseModel):
    kind: ErrorKind
    message: str
    code: int | None = None
    """Set when an upstream answered with its own JSON-RPC error code."""
    data: Any = None


# ---------------------------------------------------------------- request path


class RoutedHead(_Message):
    """What every request routed to one upstream carries for deciding it, and all policy reads of
    one (`ToolCall` and `UpstreamRequest` extend it): who, where, and until when. Policy forwards
    the same bytes, and pydantic skips the JSON a model does not name, so arguments and params are
    never parsed there (half the parse of a small call, and of a large one, measured)."""

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
    arguments_blob: str | None = None
    """Set when the arguments were too large for one NATS message: the object (`subjects.OBJ_BLOBS`)
    holding them as JSON; `arguments` is then empty (`bastion_common.blobs`)."""


class UpstreamRequest(_Routed):
    """ingress -> policy -> executor: any request routed to one upstream besides `tools/call`
    (`prompts/get`, `resources/read`, `resources/subscribe`, `completion/complete`, ...)."""

    method: str
    params: dict[str, Any] = Field(default_factory=dict)
    """Wire params with the upstream's own names (a prompt's un-namespaced name)."""
    target: str
    subscriber: str | None = None
    """`resources/(un)subscribe`: the agent session the subscription belongs to."""


class StreamEvent(_Message):
    """executor -> the ingress holding an agent's response stream: one JSON-RPC message for the agent.

    A notification (`notifications/progress`, `notifications/message`) is published; a request
    (`sampling/createMessage`, `elicitation/create`, `roots/list`) is a NATS request whose reply
    subject waits for the agent's answer as a `ClientReply`."""

    method: str
    params: dict[str, Any] | None = None


class ClientReply(_Message):
    """ingress -> executor: the agent's answer to a `StreamEvent` request (wire result or error)."""

    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class CancelCall(_Message):
    """ingress -> every ingress: an agent cancelled its request `request_id` (in session `session`)."""

    key_id: str
    session: str
    request_id: str | int


class CancelExecution(_Message):
    """ingress -> every executor: abandon the call or request with this id."""

    id: str


class ResourceUpdated(_Message):
    """executor -> every ingress: an upstream said a subscribed resource changed."""

    server: str
    uri: str


class CallOutcome(_Message):
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
    holding it as JSON; `result` is then None (`bastion_common.blobs`)."""
    cost_usd: float | None = None
    """What policy charged for the call (USD), read by the requester from policy's `Bastion-Charged-Usd`
    header (`relay.call_outcome`): policy relays the executor's bytes untouched. None: nothing priced."""

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


class Refund(_Message):
    """executor, ingress, codemode -> policy: give back what the call `id` was charged (at most once)."""

    id: str


def encode_outcome(outcome: CallOutcome) -> bytes:
    """The bus form of an outcome: its envelope (JSON on one line), then, after a newline, the
    result's JSON (`raw_result`, or `result` encoded) when it has one."""
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


class VisibleToolsQuery(_Message):
    caller: Caller
    include_servers: list[str] | None = None
    include_tools: list[str] | None = None
    tools: list[tuple[str, str]]
    """(server, tool) pairs ingress knows about; policy answers which of them the caller may use."""


class VisibleTools(_Message):
    allowed: list[int] = Field(default_factory=list)
    """Indexes into the query's `tools`."""
    error: GatewayError | None = None


# ---------------------------------------------------------------- Code Mode


class CodeModeCall(_Message):
    """ingress -> codemode: one call of a Code Mode meta-tool (`bastion_common.codemode.META_TOOLS`)."""

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


class CodeModeAnswer(_Message):
    """codemode -> ingress: the meta-tool's `CallToolResult` (wire JSON), or why there is none."""

    id: str
    result: dict[str, Any] | None = None
    error: GatewayError | None = None
    calls: int = 0
    """Tool calls the run made (each audited on its own with `parent_id`)."""
    authorize_urls: dict[str, str] = Field(default_factory=dict)
    """Server -> the caller's link to authorize it (per-user servers the run was refused by). Kept
    out of `result`, which the run's audit row records: ingress adds them to the agent's answer only."""


# ---------------------------------------------------------------- configuration & catalog (KV values)


class KeyRecord(_Message):
    id: str
    """sha256 hex of the secret; also the KV key. The secret itself is never stored."""
    name: str
    grants: list[str] = Field(default_factory=list)
    """`server/tool` patterns (wildcards allowed); deny by default."""
    groups: list[str] = Field(default_factory=list)
    """Tool group ids whose grants this key also gets."""
    user_id: str | None = None
    team_id: str | None = None
    customer_id: str | None = None
    budget: Budget | None = None
    rate_limit: RateLimit | None = None
    agent: AgentMode | None = None
    """Agent mode on `/v1/chat/completions`: which tool calls Bastion runs itself, and how deep it loops."""
    revoked: bool = False
    content_logging: bool = True
    """Whether audit events of this key's requests record their arguments and results (else only
    sizes and sha256); the deployment's `BASTION_AUDIT_CONTENT=false` turns it off for every key."""
    code_mode: bool = False
    """Whether `tools/list` offers this key the Code Mode meta-tools instead of the catalog
    (docs/code-mode.md); the `X-Bastion-Code-Mode` request header overrides it."""
    created_at: float = Field(default_factory=time.time)
    source: str | None = None
    """Who manages the record: "config" for keys `bastion up` applied from the config file (removed
    again when they leave it); None for keys created any other way, which config runs never touch."""


class ServerRecord(_Message):
    name: str
    config: ServerConfig
    source: str | None = None
    """"config" for servers `bastion up` / `config apply` wrote from a file (removed again when they
    leave it); None for servers added at run time (admin API), which applying a file never touches."""


class CatalogTool(BaseModel):
    model_config = ConfigDict(extra="ignore")
    tool: str
    """The upstream's own name."""
    definition: dict[str, Any]
    """The upstream's `Tool` exactly as it sent it (wire JSON, camelCase)."""


class BreakerStatus(BaseModel):
    """The executor's circuit breaker for one server, as last published."""

    model_config = ConfigDict(extra="ignore")
    state: Literal["closed", "open", "half_open"]
    failures: int = 0
    """Consecutive connection failures and timeouts counted so far."""
    probe_at: float | None = None
    """Unix time when an open breaker lets its next probe call through."""


class ServerCatalog(_Message):
    server: str
    status: Literal["ready", "unavailable"]
    """Whether the server's tools are listed (ingress includes them when "ready"); see `health`."""
    error: str | None = None
    health: Literal["healthy", "degraded", "open", "down", "needs_auth", "disabled"] | None = None
    """Finer than `status`: degraded = recent failures, breaker still closed; open = calls are
    refused at once; down = not connected. None from executors that predate it."""
    breaker: BreakerStatus | None = None
    protocol_version: str | None = None
    tools: list[CatalogTool] = Field(default_factory=list)
    namespace: bool = True
    """False when the server's tools and prompts keep their own names (`ServerConfig.namespace`)."""
    capabilities: dict[str, Any] = Field(default_factory=dict)
    """The upstream's server capabilities (wire JSON): which of prompts, resources (subscribe),
    completions and logging it offers."""
    prompts: list[dict[str, Any]] = Field(default_factory=list)
    """The upstream's prompts (wire JSON), every page."""
    resources: list[dict[str, Any]] = Field(default_factory=list)
    resource_templates: list[dict[str, Any]] = Field(default_factory=list)
    updated_at: float = Field(default_factory=time.time)


# ---------------------------------------------------------------- audit


AuditKind = Literal[
    "tool_call",
    "prompt_get",
    "resource_read",
    "resource_subscribe",
    "completion",
    "code_run",
    "code_mode",
    "llm_request",
    "admin",
]


class AuditEvent(_Message):
    """One governed action: an agent's request, a Code Mode run, an LLM request or an admin change.

    Arguments and results are recorded as JSON text when content logging is on for the deployment
    and the key, else only their sha256 (`audit_content`); secrets never appear (admin changes are
    redacted, `audit_redact`). `producer`, `seq`, `prev_hash` and `hash` place the event on its
    producer's hash chain (`audit_chain`), set by the publisher when the event is emitted."""

    event_id: str = Field(default_factory=new_id)
    ts: float = Field(default_factory=time.time)
    kind: AuditKind = "tool_call"
    """What the agent did: `name` is the tool or prompt's gateway name, or the resource URI.
    `code_run` is an `execute_code` run and `code_mode` another Code Mode meta-tool (`name` is the meta-tool).
    For an `llm_request` (a chat completion), `server` is the provider and `tool` and `name` the model.
    `admin`: a change made through the admin API (`actor`, `action`, `target`, `before`, `after`)."""
    trace_id: str | None = None
    key_id: str = ""
    key_name: str = ""
    user_id: str | None = None
    team_id: str | None = None
    customer_id: str | None = None
    """The key's owner when the request was made (its record's user, team and customer)."""
    server: str = ""
    tool: str = ""
    name: str = ""
    status: Literal["ok", "tool_error", "error", "denied"]
    error_kind: str | None = None
    error_code: int | None = None
    error: str | None = None
    latency_ms: float
    upstream_ms: float | None = None
    request_bytes: int = 0
    response_bytes: int = 0
    execution: Execution | None = None
    """Whether the upstream ran the request; None in events from producers that predate the field."""
    prompt_tokens: int | None = None
    """`llm_request`: tokens in and out as the provider counted them, and their cost in USD."""
    completion_tokens: int | None = None
    cost_usd: float | None = None
    """What policy charged for the request (USD): an LLM request's cost, a priced tool's price; None
    when nothing was charged."""
    tool_calls: list[str] = Field(default_factory=list)
    """`llm_request`: names of the tool calls the model proposed."""
    truncated: dict[str, int] = Field(default_factory=dict)
    """Fields the publisher cut to its size limits (`BASTION_AUDIT_MAX_*_BYTES`) -> their original
    size in UTF-8 bytes. Empty when the event is complete."""
    parent_id: str | None = None
    """`event_id` of the event this one happened inside: a Code Mode run, for the tool calls its script made;
    the `llm_request` whose proposed tool call ran (`/v1/mcp/tool/execute`, agent mode)."""
    arguments: str | None = None
    """The request's arguments as compact JSON with sorted keys; None when content logging is off."""
    result: str | None = None
    """The result as compact JSON with sorted keys; None when content logging is off."""
    arguments_sha256: str | None = None
    result_sha256: str | None = None
    """sha256 of the whole JSON (before any size cut), recorded whether or not the content is."""
    actor: str | None = None
    """`admin`: who made the change ("admin-token@<client address>")."""
    action: str | None = None
    """`admin`: what was done, `<record kind>.<create|update|delete|...>` (e.g. `key.revoke`)."""
    target: str | None = None
    """`admin`: the record changed (a key's name, a server's name, `group.<id>`, ...)."""
    before: str | None = None
    after: str | None = None
    """`admin`: the record as JSON before and after the change, every secret redacted; None when absent."""
    producer: str = ""
    """The hash chain the event is on: one per producer process (`audit_chain.producer_id`)."""
    seq: int = 0
    """Place on the producer's chain, from 1."""
    prev_hash: str = ""
    """`hash` of the event before it on the chain ("" for the first)."""
    hash: str = ""
    """sha256 over the event's canonical form (`audit_chain.canonical`)."""


class AuditBatch(_Message):
    """Several events in one JetStream message: a producer under load pays one publish and one
    ack per batch, not per call. Single `AuditEvent` messages are accepted as well."""

    batch_id: str = Field(default_factory=new_id)
    events: list[AuditEvent]


def audit_events(payload: bytes) -> list[AuditEvent]:
    """The events in one audit-stream message (an `AuditBatch` or a single `AuditEvent`).

    Raises `pydantic.ValidationError` when the payload is neither.
    """
    if b'"events"' in payload:
        return AuditBatch.model_validate_json(payload).events
    return [AuditEvent.model_validate_json(payload)]


class AuditQuery(_Message):
    limit: int = Field(default=20, ge=1, le=1000)
    key_name: str | None = None
    server: str | None = None


class AuditRows(_Message):
    rows: list[AuditEvent] = Field(default_factory=list)
    error: str | None = None


class AuditVerify(_Message):
    """CLI -> audit (`AUDIT_VERIFY`): check the stored events against their chains and checkpoints."""

    since: float | None = None
    """Check only events at or after this Unix time (each chain from its first row in range)."""


TamperKind = Literal["modified", "deleted", "inserted", "reordered", "checkpoint"]


class AuditVerdict(_Message):
    """The answer to `AuditVerify`: OK, or the first tampered row."""

    ok: bool
    problem: TamperKind | None = None
    detail: str | None = None
    """What is wrong, in words: which row, which seq, and why it does not fit."""
    event_id: str | None = None
    producer: str | None = None
    seq: int | None = None
    chains: int = 0
    events: int = 0
    checkpoints: int = 0
    """How much was checked (up to the finding, when there is one)."""
    error: str | None = None
    """Why the check could not run (the store is unavailable, a bad request)."""
