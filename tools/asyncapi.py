"""Bastion's NATS subjects as an AsyncAPI 3.0 document, generated from the contracts.

Every subject a service sends or answers on is declared here once, with the message model it
carries (`messages.py`, `analytics.py`, `oauth.py`, ...) and, for a request, the model of its reply; FastStream
builds the document (payload schemas from the pydantic models, channels, operations, NATS queue
bindings). Nothing here connects: the broker only describes. `docs/asyncapi.json` is this module's
output, and a unit test fails when it is stale:

    python -m tools.asyncapi docs/asyncapi.json

It lives in tools/, beside the other generators, not in libs/common: no service imports it, and the
installed package has no use for a document writer.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from pydantic import BaseModel

from libs.common.analytics.queries import AnalyticsAnswer, AnalyticsCancel, AnalyticsQuery, ExportPage, ExportRows
from libs.common.bus.permissions import AUDIT_PRODUCERS
from libs.common.contracts import subjects as s
from libs.common.contracts.gateway_tasks import CancelTask
from libs.common.contracts.llm import LlmOutcome, LlmRequest
from libs.common.contracts.messages import (
    AuditBatch,
    AuditQuery,
    AuditRows,
    AuditVerdict,
    AuditVerify,
    BusMoved,
    CallOutcome,
    CancelCall,
    CancelExecution,
    CodeModeAnswer,
    CodeModeCall,
    Refund,
    ResourceUpdated,
    ToolCall,
    UpstreamRequest,
    VisibleTools,
    VisibleToolsQuery,
)
from libs.common.contracts.oauth import HttpExchangeRequest, HttpExchangeResponse, PasswordChange, PasswordChanged
from libs.common.contracts.oauth_upstream import AuthorizeLink, AuthorizeLinkQuery, UpstreamToken, UpstreamTokenQuery
from libs.common.contracts.pins import PinDrift

__all__ = ["CHANNELS", "Channel", "specification"]


@dataclass(frozen=True)
class Channel:
    """One subject: who sends what to whom, and the reply when it is a request."""

    subject: str
    message: type[BaseModel]
    description: str
    reply: type[BaseModel] | None = None
    queue: str | None = None
    """The queue group the receivers share (one of them gets each message); None: every one does."""


CHANNELS: Final = (
    Channel(s.POLICY_CALL, ToolCall, "ingress, codemode -> policy: a tool call to decide", CallOutcome, s.QUEUE_POLICY),
    Channel(
        s.POLICY_REQUEST,
        UpstreamRequest,
        "ingress -> policy: prompts, resources, completion",
        CallOutcome,
        s.QUEUE_POLICY,
    ),
    Channel(
        s.POLICY_LIST, VisibleToolsQuery, "ingress -> policy: the tools a key may see", VisibleTools, s.QUEUE_POLICY
    ),
    Channel(
        s.EXEC_CALL,
        ToolCall,
        "policy -> executor: an allowed tool call (signed, same bytes)",
        CallOutcome,
        s.QUEUE_EXECUTOR,
    ),
    Channel(
        s.EXEC_REQUEST,
        UpstreamRequest,
        "policy -> executor: an allowed upstream request (signed)",
        CallOutcome,
        s.QUEUE_EXECUTOR,
    ),
    Channel(
        s.POLICY_LLM,
        LlmRequest,
        "ingress -> policy: one chat completion of /v1 (budgets charged first)",
        LlmOutcome,
        s.QUEUE_POLICY,
    ),
    Channel(
        s.EXEC_LLM,
        LlmRequest,
        "policy -> executor: an allowed chat completion (signed, same bytes)",
        LlmOutcome,
        s.QUEUE_EXECUTOR,
    ),
    Channel(
        s.CODEMODE_CALL,
        CodeModeCall,
        "ingress -> codemode: one Code Mode meta-tool call",
        CodeModeAnswer,
        s.QUEUE_CODEMODE,
    ),
    Channel(
        s.POLICY_REFUND,
        Refund,
        "executor, ingress, codemode -> every policy replica: a charged call did not run; the replica "
        "holding its charge gives it back",
    ),
    Channel(s.CALL_CANCEL, CancelCall, "ingress -> every ingress: an agent cancelled a request"),
    Channel(s.TASK_CANCEL, CancelTask, "ingress -> every ingress: an agent cancelled a gateway-hosted task"),
    Channel(s.EXEC_CANCEL, CancelExecution, "ingress -> every executor and codemode replica: abandon a call"),
    Channel(s.RESOURCE_UPDATED, ResourceUpdated, "executor -> every ingress: an upstream resource changed"),
    Channel(
        s.BUS_MOVED,
        BusMoved,
        "policy, executor, codemode -> every requester: back from a NATS member it lost; its unacknowledged "
        "calls are failed as lost there",
    ),
    Channel(
        s.PIN_DRIFT,
        PinDrift,
        "executor -> the admin role: a listed definition drifted from its pin (quarantined, flagged or removed)",
    ),
    Channel(
        f"{s.AUDIT_EVENTS}.{{role}}.{{instance}}",
        AuditBatch,
        f"each audit producer ({', '.join(AUDIT_PRODUCERS)}) -> audit (JetStream stream {s.AUDIT_STREAM}): its "
        "events, batched (a single `AuditEvent` is accepted too), on the subject of its own bus role, which "
        "only that role may publish: the audit service stores an event only if its chain belongs to that role",
    ),
    Channel(s.AUDIT_QUERY, AuditQuery, "CLI -> audit: recent audit events", AuditRows, s.QUEUE_AUDIT),
    Channel(s.AUDIT_EXPORT, ExportPage, "CLI -> audit: one page of an export", ExportRows, s.QUEUE_AUDIT),
    Channel(
        s.ANALYTICS_QUERY,
        AnalyticsQuery,
        "admin, CLI -> audit: one read-only SQL query",
        AnalyticsAnswer,
        s.QUEUE_AUDIT,
    ),
    Channel(
        s.ANALYTICS_CANCEL,
        AnalyticsCancel,
        "admin, CLI -> every audit replica: the caller of a query gave up; the replica running it stops it",
    ),
    Channel(
        s.AUDIT_VERIFY, AuditVerify, "CLI -> audit: check the hash chains and checkpoints", AuditVerdict, s.QUEUE_AUDIT
    ),
    Channel(
        s.OAUTH_HTTP,
        HttpExchangeRequest,
        "ingress -> oauth: one HTTP request to the OAuth routes (metadata, authorize, token, register, ...)",
        HttpExchangeResponse,
        s.QUEUE_OAUTH,
    ),
    Channel(
        s.OAUTH_PASSWORD,
        PasswordChange,
        "admin -> oauth: set a user's password (the oauth service alone keeps the hash)",
        PasswordChanged,
        s.QUEUE_OAUTH,
    ),
    Channel(
        s.OAUTH_UPSTREAM_TOKEN,
        UpstreamTokenQuery,
        "executor -> oauth: the current access token of an OAuth upstream (shared or per user)",
        UpstreamToken,
        s.QUEUE_OAUTH,
    ),
    Channel(
        s.OAUTH_UPSTREAM_LINK,
        AuthorizeLinkQuery,
        "admin -> oauth: the Bastion link that authorizes an upstream (for a user)",
        AuthorizeLink,
        s.QUEUE_OAUTH,
    ),
)


def _describe(broker: NatsBroker, channel: Channel) -> None:
    async def receive(message: Any) -> None:  # the annotation below gives the payload schema
        del message

    receive.__annotations__ = {"message": channel.message, "return": None}
    broker.subscriber(
        channel.subject, queue=channel.queue or "", title=channel.subject, description=channel.description
    )(receive)
    if channel.reply is not None:
        broker.publisher(
            f"{channel.subject}.reply",
            title=f"{channel.subject} reply",
            description=f"the answer to a {channel.subject} request, sent to the requester's reply inbox",
            schema=channel.reply,
        )


def specification(version: str = "1") -> dict[str, Any]:
    """The AsyncAPI 3.0 document of `CHANNELS`, as JSON-ready data."""
    broker = NatsBroker()
    for channel in CHANNELS:
        _describe(broker, channel)
    spec = AsyncAPI(
        broker,
        title="Bastion bus",
        version=version,
        description="The NATS subjects Bastion's services speak on (see docs/architecture.md).",
        schema_version="3.0.0",
    )
    document: dict[str, Any] = json.loads(spec.to_specification().to_json())
    document.pop("servers", None)  # FastStream's placeholder; the NATS URL is deployment config
    for channel_doc in document.get("channels", {}).values():
        channel_doc.pop("servers", None)
    return document


def main(argv: list[str]) -> int:
    text = json.dumps(specification(), indent=2, sort_keys=True) + "\n"
    if len(argv) > 1:
        Path(argv[1]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
