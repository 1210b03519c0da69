"""What every provider round trip of one `/v1` request shares, and how a failed one reads in its audit row.

A request of any front becomes one `Chat`: who asks, for which model and provider (or routed
deployments), under which price and timeout. Each round trip to the provider (one, or several in
agent mode) owes one `llm_request` audit event, begun in the audit journal before it is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from libs.common.audit.audit_content import error_column
from libs.common.audit.audit_journal import AuditJournal
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.llm import RoutedDeployment
from libs.common.contracts.llm_config import ModelPrice
from libs.common.contracts.messages import AuditEvent, Caller, GatewayError, LlmFront, new_id

__all__ = ["Chat", "error_kind", "failed", "listing_error"]

_DENIED = (ErrorKind.FORBIDDEN, ErrorKind.KEY_REVOKED, ErrorKind.RATE_LIMITED, ErrorKind.BUDGET_EXCEEDED)


@dataclass(slots=True)
class Chat:
    """What every round of one chat completion shares."""

    caller: Caller
    headers: dict[str, str]
    """The HTTP request's headers (trace id, narrowing, Code Mode override), for every tool call it leads to."""
    provider: str
    model: str
    price: ModelPrice | None
    timeout: float
    request_bytes: int
    journal: AuditJournal | None = None
    injected: set[str] = field(default_factory=set)
    """Names of the MCP tools injected (the only ones Bastion may run, and remembers parents for)."""
    deployments: list[RoutedDeployment] = field(default_factory=list)
    """A routed model's deployments (`route_table`); empty: the provider that lists the model."""
    front: LlmFront = "chat_completions"
    """The API the request came in through, named in each round's audit row."""

    @property
    def trace_id(self) -> str | None:
        return self.headers.get("x-bastion-trace-id")

    def audit(self) -> AuditEvent:
        """The event one provider round trip owes.

        Journaled first, so a replica killed before the answer still leaves its row (as for MCP requests,
        `libs.common.audit.audit_journal`)."""
        event_id = new_id()
        if self.journal is not None:
            event_id = self.journal.begun(
                "llm_request",
                self.model,
                self.caller.key_id,
                self.caller.key_name,
                self.trace_id,
                self.request_bytes,
                **self.caller.owner(),
                llm_front=self.front,
            )
        return AuditEvent(
            event_id=event_id,
            kind="llm_request",
            trace_id=self.trace_id,
            key_id=self.caller.key_id,
            key_name=self.caller.key_name,
            **self.caller.owner(),
            server=self.provider,
            tool=self.model,
            name=self.model,
            status="error",
            latency_ms=0.0,
            request_bytes=self.request_bytes,
            llm_front=self.front,
        )


def failed(audit: AuditEvent, error: GatewayError) -> None:
    """`audit` as the row of a round that ended in `error` (denied by policy, or an error)."""
    audit.status = "denied" if error.kind in _DENIED else "error"
    audit.error_kind, audit.error, audit.error_code = error.kind.value, error_column(error), error.code


def listing_error(error: dict[str, Any]) -> GatewayError:
    """The JSON-RPC error of a refused `tools/list` as the gateway error it came from."""
    data = error.get("data")
    kind = error_kind(data.get("kind")) if isinstance(data, dict) else None
    return GatewayError(kind=kind or ErrorKind.INVALID_ARGUMENTS, message=str(error.get("message", "")))


def error_kind(value: Any) -> ErrorKind | None:
    """`value` as an error kind, or None when it names none."""
    try:
        return ErrorKind(value)
    except ValueError:
        return None
