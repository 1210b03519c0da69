"""The audit event each request that reached an audited handler ends in, built from what the handler knows.

(`AuditRecorder`); which methods owe one (`AUDITED`), and what their metrics say.

The handlers build the events; the `/mcp` pipeline emits them, in one place
(`mcp_edge.handler_steps.Audit`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

from libs.common.audit.audit_content import content_fields, error_column, error_said
from libs.common.audit.audit_journal import AuditJournal
from libs.common.contracts.errors import JSONRPC_CODE, ErrorKind
from libs.common.contracts.messages import AuditEvent, Execution, GatewayError, InterceptorDecision, new_id
from services.ingress.context import RequestContext

__all__ = [
    "AUDITED",
    "TOOL_ERROR",
    "AuditRecorder",
    "Ending",
    "audit_name",
    "failure",
    "metrics_outcome",
]

AUDITED = {
    "tools/call": "tool_call",
    "prompts/get": "prompt_get",
    "resources/read": "resource_read",
    "skills/get": "resource_read",
    "resources/subscribe": "resource_subscribe",
    "resources/unsubscribe": "resource_subscribe",
    "completion/complete": "completion",
    # MCP tasks: `action` names the method, `target` the task, `parent_id` the call that made it
    "tasks/get": "task",
    "tasks/result": "task",
    "tasks/cancel": "task",
    "tasks/update": "task",
}
"""Methods whose every request that reaches its handler ends in exactly one audit event, and its kind."""
_DENIED = (
    ErrorKind.FORBIDDEN,
    ErrorKind.KEY_REVOKED,
    ErrorKind.RATE_LIMITED,
    ErrorKind.BUDGET_EXCEEDED,
    ErrorKind.APPROVAL_REQUIRED,
)
TOOL_ERROR: Final = "tool_error"
"""The `error_kind` of a request whose upstream answered with an error result (`isError`): the
tool ran and reported a failure, as opposed to a gateway error kind (`ErrorKind`)."""


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
    policy_id: str | None = None
    approval_id: str | None = None
    """The Cedar policy that decided, and the approval waited for (`CallOutcome`'s)."""
    approval_run: str | None = None
    """`run` or `replay` under an approval (`CallOutcome`'s): the row's `action` says
    `approval.run` or `approval.replay`."""


def audit_name(params: Any) -> str:
    """What an audit row names for a request whose handler did not say: its name, URI or ref."""
    if not isinstance(params, dict):
        return ""
    # the first text of: name, uri, ref.name, ref.uri (a test pins the order); no list or
    # generator built for what is nearly always the first one (~0.4 µs a request)
    if isinstance(name := params.get("name"), str):
        return name
    if isinstance(uri := params.get("uri"), str):
        return uri
    ref = params.get("ref")
    if isinstance(ref, dict):
        if isinstance(name := ref.get("name"), str):
            return name
        if isinstance(uri := ref.get("uri"), str):
            return uri
    return ""


def metrics_outcome(payload: dict[str, Any], audit: AuditEvent | None) -> str:
    """The `outcome` label of a request's metrics: its error kind, `tool_error`, `error`, or `ok`."""
    if audit is not None:
        return audit.error_kind or audit.status
    return "error" if "error" in payload else "ok"


class AuditRecorder:
    """Builds the events of one replica's requests, with the request's content as the deployment and the key say.

    Counts every event owed and journals it before it is forwarded."""

    def __init__(self, *, content: bool = True, limit: int | None = None, journal: AuditJournal | None = None) -> None:
        self.content = content
        """Deployment switch: False keeps only sizes and sha256 of arguments and results."""
        self.limit = limit
        """UTF-8 bytes of arguments and results an event records at most (the publisher's content
        limit): cut before they are decoded, so a large result costs its digest, not its size again."""
        self.journal = journal
        """Where a request that owes an event is written down before it is forwarded (`begin`)."""
        self.owed = 0
        """Events this replica owes: one per request that reached an audited handler, one per upstream
        (un)subscribe made for a `subscriptions/listen` stream. Each is emitted exactly once."""

    def begin(self, ctx: RequestContext, method: str, params: Any) -> bool:
        """`method` reached its handler: whether it owes an event.

        A replica killed from here on still leaves it (the journal assigns its id, `ctx.audit_id`)."""
        kind = AUDITED.get(method)
        if kind is None:
            return False
        self.owed += 1
        if self.journal is not None:
            # the handlers journal the route (`routed`) before they forward a request
            ctx.audit_id = self.journal.begun(
                kind,
                audit_name(params),
                ctx.caller.key_id,
                ctx.caller.key_name,
                ctx.trace_id,
                ctx.request_bytes,
                **ctx.caller.owner(),
                held=True,
            )
        return True

    def record(
        self,
        ctx: RequestContext,
        kind: str,
        name: str,
        server: str | None,
        tool: str | None,
        ending: Ending,
        *,
        arguments: dict[str, Any] | bytes | None = None,
        result: bytes | None = None,
        arguments_sha256: str | None = None,
    ) -> AuditEvent:
        """The event of a request; `arguments` as a value or as its `audit_content.to_json` bytes.

        `arguments_sha256`: the digest of those bytes, when the journal already took it."""
        error = ending.error
        said = result if result is not None or error is None else error_said(error)
        keep = self.content and ctx.caller.content_logging
        content = content_fields(arguments, said, keep=keep, limit=self.limit, arguments_sha256=arguments_sha256)
        if error is not None:
            status = "denied" if error.kind in _DENIED else "error"
            code = error.code if error.code is not None else JSONRPC_CODE[error.kind]
        else:
            status = TOOL_ERROR if ending.tool_error else "ok"
            code = None
        # validated from one dict: `AuditEvent(**fields)` validates the same, ~1 µs slower (keyword
        # arguments packed again, then validated into an instance made beforehand)
        fields = {
            "event_id": ctx.audit_id or new_id(),
            "kind": kind,
            "trace_id": ctx.trace_id,
            "key_id": ctx.caller.key_id,
            "key_name": ctx.caller.key_name,
            "server": server or "",
            "tool": tool or "",
            "name": name,
            "status": status,
            "error_kind": error.kind.value if error else (TOOL_ERROR if ending.tool_error else None),
            "error_code": code,
            "error": error_column(error),
            "latency_ms": (time.perf_counter() - ctx.started) * 1000,
            "upstream_ms": ending.upstream_ms,
            "request_bytes": ctx.request_bytes,
            "execution": ending.execution or ("ran" if error is None else "not_run"),
            "cost_usd": ending.cost_usd,
            "interceptions": ending.interceptions or [],
            "policy_id": ending.policy_id,
            "approval_id": ending.approval_id,
            "action": f"approval.{ending.approval_run}" if ending.approval_run else None,
        }
        return AuditEvent.model_validate(fields | ctx.caller.owner() | content)

    def interrupted(
        self, ctx: RequestContext, method: str, params: Any, error: GatewayError | None = None
    ) -> AuditEvent | None:
        """The event of a request whose handler did not finish (it failed, or was cancelled).

        Or None when `method` is not audited."""
        kind = AUDITED.get(method)
        if kind is None:
            return None
        error = error or failure(ctx, "the gateway stopped handling this request (shutting down?)")
        return self.record(ctx, kind, audit_name(params), None, None, Ending(error))


def failure(ctx: RequestContext, what: str) -> GatewayError:
    """An internal error of ours, saying whether the request had already been sent upstream."""
    if ctx.call_id is not None:
        what += "; it had been sent upstream and may have run"
    return GatewayError(kind=ErrorKind.INTERNAL, message=what)
