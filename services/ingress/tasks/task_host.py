"""What the task methods need of the handlers that route them to a task (`TaskHost`).

Declared here, so the tasks package does not import the handlers that import it."""

from __future__ import annotations

from typing import Any, Protocol

from libs.common.contracts.messages import AuditEvent
from services.ingress.audit_events import AuditRecorder
from services.ingress.catalog.aggregated import Catalog
from services.ingress.context import RequestContext
from services.ingress.sending.routed_sender import RoutedSender

__all__ = ["TaskHost"]


class TaskHost(Protocol):
    """`services.ingress.handlers.Handlers`, as a task sees it.

    The catalog it names tools from, the sender of its upstream requests, the audit recorder of its
    events, and a plain `tools/call`."""

    catalog: Catalog
    sender: RoutedSender
    audits: AuditRecorder

    async def tools_call(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[dict[str, Any], AuditEvent | None]:
        """A `tools/call` as the handlers answer it, not as a task."""
        ...
