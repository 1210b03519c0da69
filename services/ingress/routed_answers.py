"""What a method routed upstream answers: the audited send of one request and its upstream's answer.

The handlers (`handlers.Handlers`) and the resource and skill answers (`resource_answers`) route
prompts, resources, skills and completions through one `RoutedAnswers`; it sends on the
`RoutedSender`, journals the target before sending, and records the audit event of the answer.
"""

from __future__ import annotations

from typing import Any

from libs.common.contracts.messages import AuditEvent, CallOutcome
from services.ingress.audit_events import AuditRecorder, Ending
from services.ingress.catalog.aggregated import CatalogEntry
from services.ingress.context import RequestContext
from services.ingress.protocol import RawJson, gateway_error_body, ok_body
from services.ingress.sending.routed_sender import RoutedSender

__all__ = ["Answered", "RoutedAnswers", "upstream_answer"]

Answered = tuple[dict[str, Any], AuditEvent | None]
"""A response body and, for an audited method, its audit event."""


class RoutedAnswers:
    """Sends a request upstream for its entry and answers with what came back, audited."""

    def __init__(self, sender: RoutedSender, audits: AuditRecorder) -> None:
        self.sender = sender
        self.audits = audits

    async def route(
        self,
        ctx: RequestContext,
        method: str,
        entry: CatalogEntry,
        params: dict[str, Any],
        kind: str,
        *,
        name: str | None = None,
        target: str | None = None,
    ) -> tuple[dict[str, Any], AuditEvent]:
        """The answer to `method` for `entry` from its upstream, and its `kind` audit event (uncharged)."""
        journal = self.audits.journal
        if journal is not None and ctx.audit_id:  # a crash from here on: an event naming the target
            journal.routed(ctx.audit_id, entry.server, entry.tool)
        outcome = await self.sender.request(ctx, method, entry, params, target)
        ending = Ending(  # uncharged
            outcome.error, outcome.is_error, outcome.upstream_ms, outcome.execution, interceptions=outcome.interceptions
        )
        audit = self.audits.record(ctx, kind, name or entry.name, entry.server, entry.tool, ending)
        if outcome.error is not None:
            return gateway_error_body(ctx.request_id, outcome.error, server=entry.server), audit
        return upstream_answer(ctx, outcome, {}), audit


def upstream_answer(ctx: RequestContext, outcome: CallOutcome, empty: dict[str, Any]) -> dict[str, Any]:
    """The answer carrying an upstream's result.

    The executor shaped and encoded it for this agent's revision (`version` of the request), so its bytes
    go in untouched."""
    if outcome.raw_result is not None:
        return {"jsonrpc": "2.0", "id": ctx.request_id, "result": RawJson(outcome.raw_result)}
    return ok_body(ctx.request_id, ctx.version, outcome.result or empty)
