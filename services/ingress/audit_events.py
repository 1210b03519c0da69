"""The audit event each request that reached an audited handler ends in, built from what the
handler knows (`audit_event`); which methods owe one (`AUDITED`), and what their metrics say.

Pure functions: the handlers call them, the endpoint emits the events (`handlers.Handlers.dispatch`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from libs.common.errors import JSONRPC_CODE, ErrorKind
from libs.common.messages import AuditEvent, Execution, GatewayError, InterceptorDecision, new_id

from .context import RequestContext

__all__ = ["AUDITED", "Ending", "audit_event", "audit_name", "metrics_outcome"]

AUDITED = {
    "tools/call": "tool_call",
    "prompts/get": "prompt_get",
    "resources/read": "resource_read",
    "resources/subscribe": "resource_subscribe",
    "resources/unsubscribe": "resource_subscribe",
    "completion/complete": "completion",
}
"""Methods whose every request that reaches its handler ends in exactly one audit event, and its kind."""
_DENIED = (ErrorKind.FORBIDDEN, ErrorKind.KEY_REVOKED, ErrorKind.RATE_LIMITED, ErrorKind.BUDGET_EXCEEDED)


@dataclass(frozen=True, slots=True)
class Ending:
    """How a request ended, as far as its audit event tells."""

    error: GatewayError | None
    tool_error: bool = False
    upstream_ms: float | None = None
    execution: Execution | None = None
    """As the outcome said; without one, a result ran and an error stopped it here."""
    cost_usd: float | None = None
    interceptions: list[InterceptorDecision] | None = None
    """What the executor's interceptors decided (`CallOutcome.interceptions`)."""


def audit_event(
    ctx: RequestContext,
    kind: str,
    name: str,
    server: str | None,
    tool: str | None,
    ending: Ending,
    content: dict[str, Any],
) -> AuditEvent:
    """The event of one request; `content` is `audit_content.content_fields` of its arguments and result."""
    error = ending.error
    if error is not None:
        status = "denied" if error.kind in _DENIED else "error"
        code = error.code if error.code is not None else JSONRPC_CODE[error.kind]
    else:
        status = "tool_error" if ending.tool_error else "ok"
        code = None
    return AuditEvent(
        event_id=ctx.audit_id or new_id(),
        kind=kind,
        trace_id=ctx.trace_id,
        key_id=ctx.caller.key_id,
        key_name=ctx.caller.key_name,
        **ctx.caller.owner(),
        **content,
        server=server or "",
        tool=tool or "",
        name=name,
        status=status,
        error_kind=error.kind.value if error else None,
        error_code=code,
        error=error.message if error else None,
        latency_ms=(time.perf_counter() - ctx.started) * 1000,
        upstream_ms=ending.upstream_ms,
        request_bytes=ctx.request_bytes,
        execution=ending.execution or ("ran" if error is None else "not_run"),
        cost_usd=ending.cost_usd,
        interceptions=ending.interceptions or [],
    )


def audit_name(params: Any) -> str:
    """What an audit row names for a request whose handler did not say: its name, URI or ref."""
    if not isinstance(params, dict):
        return ""
    ref = params.get("ref")
    candidates = [params.get("name"), params.get("uri")]
    if isinstance(ref, dict):
        candidates += [ref.get("name"), ref.get("uri")]
    return next((value for value in candidates if isinstance(value, str)), "")


def metrics_outcome(payload: dict[str, Any], audit: AuditEvent | None) -> str:
    """The `outcome` label of a request's metrics: its error kind, `tool_error`, `error`, or `ok`."""
    if audit is not None:
        return audit.error_kind or audit.status
    return "error" if "error" in payload else "ok"
