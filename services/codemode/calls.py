"""The tool calls a script makes.

Each one a `ToolCall` through policy (the key's grants, budgets and rate limits) to the executor, audited
with the run as its parent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from libs.common.audit.audit_content import content_fields, error_column, error_said
from libs.common.audit.audit_journal import AuditJournal
from libs.common.contracts.codemode import META_TOOL_NAMES
from libs.common.contracts.errors import JSONRPC_CODE, ErrorKind
from libs.common.contracts.messages import AuditEvent, CallOutcome, CodeModeCall, GatewayError, ToolCall, new_id
from libs.common.contracts.naming import namespaced
from libs.common.contracts.oauth_upstream import authorize_url_of

from .gateway import PolicyGateway
from .metatool_answers import tool_value
from .sandbox_limits import Limits, limit_message
from .toolset import Toolset, ToolSpec

__all__ = ["CallPath", "ScriptCalls", "audit_event"]

_TIMEOUTS: Final = (ErrorKind.UPSTREAM_TIMEOUT, ErrorKind.GATEWAY_TIMEOUT)
_DENIED: Final = (ErrorKind.FORBIDDEN, ErrorKind.KEY_REVOKED, ErrorKind.RATE_LIMITED, ErrorKind.BUDGET_EXCEEDED)


def audit_event(
    request: CodeModeCall,
    spec: ToolSpec,
    call: ToolCall,
    outcome: CallOutcome,
    latency_ms: float,
    *,
    content: bool = True,
    event_id: str | None = None,
) -> AuditEvent:
    """The audit row of one tool call a run made, under the run (`parent_id`).

    Its arguments and result are recorded when `content` (the deployment's setting) and the key's own
    allow it, else only their sha256. `event_id`: the one the audit journal gave the call before it was
    sent."""
    error = outcome.error
    status: Literal["ok", "tool_error", "error", "denied"]
    if error is not None:
        status = "denied" if error.kind in _DENIED else "error"
        code = error.code if error.code is not None else JSONRPC_CODE[error.kind]
    else:
        status = "tool_error" if outcome.is_error or (outcome.result and outcome.result.get("isError")) else "ok"
        code = None
    return AuditEvent(
        event_id=event_id or new_id(),
        kind="tool_call",
        trace_id=request.trace_id,
        key_id=request.caller.key_id,
        key_name=request.caller.key_name,
        **request.caller.owner(),
        **content_fields(
            call.arguments,
            _said(outcome, error),  # as the upstream sent it
            keep=content and request.caller.content_logging,
        ),
        server=spec.server,
        tool=spec.tool,
        name=call.name,
        status=status,
        error_kind=error.kind.value if error else None,
        error_code=code,
        error=error_column(error),
        latency_ms=latency_ms,
        upstream_ms=outcome.upstream_ms,
        cost_usd=outcome.cost_usd,
        interceptions=outcome.interceptions,
        parent_id=request.parent_id,
    )


def _said(outcome: CallOutcome, error: GatewayError | None) -> Any:
    """The `result` an event records.

    The upstream's answer as it sent it, else what an error said that the `error` column leaves out
    (`audit_content.error_said`)."""
    if outcome.raw_result is not None:
        return outcome.raw_result
    return outcome.result if outcome.result is not None else error_said(error)


def _tool_error_text(result: dict[str, Any]) -> str:
    texts = [b.get("text", "") for b in result.get("content") or [] if isinstance(b, dict) and b.get("type") == "text"]
    return "\n".join(texts).strip() or "the tool reported an error without a message"


@dataclass(frozen=True, slots=True)
class CallPath:
    """Where every script's tool calls go on this replica, and the limits they run under."""

    gateway: PolicyGateway
    emit: Callable[[AuditEvent], object]
    """Publishes a call's audit event."""
    limits: Limits
    call_timeout: float
    """The most one call may take (`BASTION_CALL_TIMEOUT`); the run's wall-clock limit may leave less."""
    content: bool = True
    """The deployment's content logging (`BASTION_AUDIT_CONTENT`)."""
    journal: AuditJournal | None = None
    """Where each call is written down before it is sent (`ScriptCalls._owe`), as ingress does for an agent's."""


class ScriptCalls:
    """Performs the batches of tool calls one run asks for (`sandbox.CallBatch`)."""

    def __init__(self, request: CodeModeCall, toolset: Toolset, path: CallPath) -> None:
        self.request, self.toolset, self.path = request, toolset, path
        limits = path.limits
        self.deadline = time.monotonic() + min(limits.wall_seconds, request.timeout)
        self.count = 0
        self.authorize_urls: dict[str, str] = {}
        """Server -> the caller's authorization link, from refusals of per-user servers the caller has
        not authorized. Never shown to the script (whose output and result audit rows keep): the run's
        answer to the agent adds them (`CodeModeAnswer.authorize_urls`)."""
        self._slots = asyncio.Semaphore(limits.max_parallel)
        self._abandoning: set[asyncio.Task[None]] = set()

    def _owe(self, call: ToolCall) -> str | None:
        """Journal the call's audit event before the call is sent (and where to, with what).

        A replica killed while the tool runs still leaves its row, under the run, once the slot's next
        process replays the journal. The event id to give that row; None without a journal."""
        journal = self.path.journal
        if journal is None:
            return None
        request = self.request
        event_id = journal.begun(
            "tool_call",
            call.name,
            request.caller.key_id,
            request.caller.key_name,
            request.trace_id,
            0,  # as `audit_event`: the script's call has no request body of its own
            **request.caller.owner(),
            parent_id=request.parent_id,
        )
        journal.routed(event_id, call.server, call.tool, call.arguments)
        return event_id

    def _audit(
        self, spec: ToolSpec, call: ToolCall, outcome: CallOutcome, latency_ms: float, event_id: str | None
    ) -> None:
        self.path.emit(
            audit_event(self.request, spec, call, outcome, latency_ms, content=self.path.content, event_id=event_id)
        )

    def _abandoned(self, spec: ToolSpec, call: ToolCall, latency_ms: float, event_id: str | None) -> None:
        """A call in flight when its run stopped: still one audit row, and the executor lets it go."""
        error = GatewayError(
            kind=ErrorKind.CANCELLED, message="the run stopped before the tool answered; it may have run"
        )
        outcome = CallOutcome(id=call.id, error=error, decided_by="executor")
        self._audit(spec, call, outcome, latency_ms, event_id)
        task = asyncio.create_task(self.path.gateway.abandon(call.id))
        self._abandoning.add(task)
        task.add_done_callback(self._abandoning.discard)

    async def __call__(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self._one(item) for item in batch)))

    async def _one(self, item: dict[str, Any]) -> dict[str, Any]:
        name, arguments = item.get("name"), item.get("arguments")
        if not isinstance(name, str) or not isinstance(arguments, dict):
            return {"error": "a tool call needs a name and a dict of arguments"}
        if name in META_TOOL_NAMES:
            return {"error": f"{name} is a meta-tool of the agent; a script cannot call it"}
        spec = self.toolset.by_name.get(name)
        if spec is None:
            closest = self.toolset.closest(name)
            hint = f"; closest: {', '.join(closest)}" if closest else "; search_tools finds tools by keyword"
            return {"error": f"no tool {name} for this key{hint}"}
        self.count += 1
        if self.count > self.path.limits.max_calls:
            return {"error": f"tool call limit of {self.path.limits.max_calls} per run"}
        call = ToolCall(
            trace_id=self.request.trace_id,
            caller=self.request.caller,
            server=spec.server,
            tool=spec.tool,
            name=namespaced(spec.server, spec.tool),
            arguments=spec.upstream_arguments(arguments),
            include_servers=self.request.include_servers,
            include_tools=self.request.include_tools,
            timeout=max(0.1, min(self.path.call_timeout, self.deadline - time.monotonic())),
        )
        capped = call.timeout < self.path.call_timeout  # the run's wall-clock limit bounds this call
        async with self._slots:
            started = time.perf_counter()
            event_id = self._owe(call)
            try:
                outcome = await self.path.gateway.call(call)
            except asyncio.CancelledError:  # the run stopped (a limit, or the service stopping)
                self._abandoned(spec, call, (time.perf_counter() - started) * 1000, event_id)
                raise
            latency_ms = (time.perf_counter() - started) * 1000
        self._audit(spec, call, outcome, latency_ms, event_id)
        if outcome.error is not None:
            if capped and outcome.error.kind in _TIMEOUTS:
                return {"error": limit_message("wall", self.path.limits), "limit": "wall"}
            message = f"{outcome.error.kind.value}: {outcome.error.message}"
            if (link := authorize_url_of(outcome.error.data)) is not None:
                self.authorize_urls[spec.server] = link
                message += " (the link to authorize it comes with this run's answer)"
            return {"error": message}
        result = outcome.result or {}
        if result.get("isError"):
            return {"error": _tool_error_text(result)}
        return {"value": tool_value(result, spec.definition.get("outputSchema"))}
