"""Audit messages (`messages`).

The event every governed action becomes, its batches, and the audit service's queries and verdicts.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from libs.common.contracts.messages_base import BusMessage, Execution, InterceptorDecision, new_id

__all__ = [
    "AuditBatch",
    "AuditEvent",
    "AuditKind",
    "AuditQuery",
    "AuditRows",
    "AuditVerdict",
    "AuditVerify",
    "ChainVoucher",
    "FlaggedEvent",
    "LlmFront",
    "TamperKind",
    "audit_events",
]


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
    "auth.refused",
    "task",
]

LlmFront = Literal["chat_completions", "responses", "messages", "gemini"]
"""The API a `/v1` model request came in through: OpenAI chat completions, OpenAI Responses,
Anthropic Messages, Gemini's `generateContent`."""


class AuditEvent(BusMessage):
    """One governed action: an agent's request, a Code Mode run, an LLM request or an admin change.

    Arguments and results are recorded as JSON text when content logging is on for the deployment
    and the key, else only their sha256 (`audit_content`); secrets never appear (admin changes are
    redacted, `services.admin.api.redaction`). `producer`, `seq`, `prev_hash` and `hash` place the event on its
    producer's hash chain (`audit_chain`), set by the publisher when the event is emitted."""

    event_id: str = Field(default_factory=new_id)
    ts: float = Field(default_factory=time.time)
    kind: AuditKind = "tool_call"
    """What the agent did: `name` is the tool or prompt's gateway name, or the resource URI.
    `code_run` is an `execute_code` run and `code_mode` another Code Mode meta-tool (`name` is the meta-tool).
    For an `llm_request` (a chat completion), `server` is the provider and `tool` and `name` the model.
    `admin`: a change made through the admin API (`actor`, `action`, `target`, `before`, `after`).
    `auth.refused`: requests refused for their credential in one window (`libs.common.runtime.refusals`):
    `name` is the surface (`mcp`, `llm`, `admin`), `error_kind` the reason (`missing`, `invalid`,
    `expired`, `revoked`; `mixed` for an overflow bucket holding several), `actor_address` the client
    address, `credential` what was presented, `refusals` how many, `first_seen` and `last_seen` when."""
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
    llm_attempts: list[str] = Field(default_factory=list)
    """`llm_request` of a routed model: each deployment tried or skipped, in order, as
    `provider/model (route): outcome in ms` (`LlmAttempt.line`, docs/llm-routing.md)."""
    llm_front: LlmFront | None = None
    """`llm_request`: the API the caller spoke (docs/llm-fronts.md); None on other kinds."""
    truncated: dict[str, int] = Field(default_factory=dict)
    """Fields the publisher cut to its size limits (`BASTION_AUDIT_MAX_*_BYTES`) -> their original
    size in UTF-8 bytes. Empty when the event is complete."""
    interceptions: list[InterceptorDecision] = Field(default_factory=list)
    """What the executor's interceptors decided about the request (`CallOutcome.interceptions`): the
    rule, the action and where, never the matched content."""
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
    """`admin`: the principal who made the change (`alice@example.com`, `ci-bot`; `bootstrap` for the
    bootstrap token creating the first owner)."""
    actor_role: str | None = None
    """`admin`: the actor's roles as bound (`owner`, `key_manager@team:payments`, comma-separated)."""
    actor_address: str | None = None
    """`admin`: the client address the change came from; `auth.refused`: the refused requests' (or `other`)."""
    action: str | None = None
    """`admin`: what was done, `<record kind>.<create|update|delete|...>` (e.g. `key.revoke`)."""
    target: str | None = None
    """`admin`: the record changed (a key's name, a server's name, `group.<id>`, ...)."""
    before: str | None = None
    after: str | None = None
    """`admin`: the record as JSON before and after the change, every secret redacted; None when absent."""
    credential: str | None = None
    """`auth.refused`: the credential presented, as `refusals.credential_label` says it: its public kind
    and the first 12 hex digits of its sha256 (`bk_ sha256:3f2a9c01b7de`), `none`, or `other` (overflow)."""
    refusals: int | None = None
    """`auth.refused`: requests refused in the window for this surface, address, credential and reason."""
    first_seen: float | None = None
    last_seen: float | None = None
    """`auth.refused`: Unix times of the first and the last of those requests."""
    policy_id: str | None = None
    """The Cedar policy (`@id`) that decided the request: refused it, parked it for approval, or
    `grants` when no policy forbade it (docs/policy.md); None when no policy set was consulted."""
    approval_id: str | None = None
    """The approval the request waited for or ran under (docs/approvals.md); on an `admin` event
    deciding one, `target` names it too."""
    initiator: Literal["app"] | None = None
    """"app": a `tools/call` of a tool MCP Apps keeps for the app (`_meta.ui.visibility` without
    "model"), made by a host for its app (docs/mcp-apps.md); None: the agent's own request."""
    producer: str = ""
    """The hash chain the event is on: one per producer process (`audit_chain.producer_id`)."""
    seq: int = 0
    """Place on the producer's chain, from 1."""
    prev_hash: str = ""
    """`hash` of the event before it on the chain ("" for the first)."""
    hash: str = ""
    """sha256 over the event's canonical form (`audit_chain.canonical`)."""


class AuditBatch(BusMessage):
    """Several events in one JetStream message.

    A producer under load pays one publish and one ack per batch, not per call. Single `AuditEvent`
    messages are accepted as well."""

    batch_id: str = Field(default_factory=new_id)
    events: list[AuditEvent]


def audit_events(payload: bytes) -> list[AuditEvent]:
    """The events in one audit-stream message (an `AuditBatch` or a single `AuditEvent`).

    Raises `pydantic.ValidationError` when the payload is neither.
    """
    if b'"events"' in payload:
        return AuditBatch.model_validate_json(payload).events
    return [AuditEvent.model_validate_json(payload)]


class AuditQuery(BusMessage):
    limit: int = Field(default=20, ge=1, le=1000)
    key_name: str | None = None
    server: str | None = None
    kind: str | None = Field(default=None, max_length=64)
    """Only events of this kind (`auth.refused`, `admin`, ...)."""


class AuditRows(BusMessage):
    rows: list[AuditEvent] = Field(default_factory=list)
    error: str | None = None


class AuditVerify(BusMessage):
    """CLI -> audit (`AUDIT_VERIFY`): check the stored events against their chains and checkpoints."""

    since: float | None = None
    """Check only events at or after this Unix time (each chain from its first row in range)."""


TamperKind = Literal["modified", "deleted", "inserted", "reordered", "checkpoint", "flagged"]
"""`flagged`: no stored row was tampered with, but the writer flagged or refused events (`flagged`)."""


class ChainVoucher(BusMessage):
    """Who vouches for one hash chain: the bus role(s) whose audit subjects its events arrived on.

    Only a role may publish on its own subjects, and the writer stores an event only when its chain
    belongs to that role, so a chain has exactly one; none for rows stored before events were bound to
    their producers' subjects."""

    producer: str
    roles: list[str] = Field(default_factory=list)
    events: int = 0
    flagged: int = 0


class FlaggedEvent(BusMessage):
    """An event the writer stored with a flag (`stored`: a key that does not exist) or refused and dead-lettered.

    (Not stored: a chain of another producer, a subject no producer owns, not an event)."""

    event_id: str
    producer: str
    role: str
    """The bus role whose subject it arrived on ("" when the subject named none)."""
    reason: str
    stored: bool


class AuditVerdict(BusMessage):
    """The answer to `AuditVerify`: OK, or the first tampered row (or, with none, the flagged events).

    And which producer vouches for each chain."""

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
    vouchers: list[ChainVoucher] = Field(default_factory=list)
    flagged: list[FlaggedEvent] = Field(default_factory=list)
    """The newest flagged or refused events (at most 20); `flagged_total` counts them all."""
    flagged_total: int = 0
    error: str | None = None
    """Why the check could not run (the store is unavailable, a bad request)."""
