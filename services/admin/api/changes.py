"""Admin changes as audit events: who changed which record, and how it read before and after.

The actor is set per request by `AdminAuth` (a context variable, so concurrent requests never mix
them up); `Table` reports each write it made. Before/after are the records as JSON with every
secret redacted (`libs.common.audit_redact`).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from libs.common.audit_content import to_json
from libs.common.audit_redact import redacted
from libs.common.messages import AuditEvent

__all__ = ["ACTOR", "ChangeLog"]

ACTOR: contextvars.ContextVar[str] = contextvars.ContextVar("bastion_admin_actor", default="admin")
"""Who is making the current admin request: "admin-token@<client address>"."""


def _json(record: BaseModel | None) -> str | None:
    return None if record is None else to_json(redacted(record.model_dump(mode="json")))


class ChangeLog:
    def __init__(self, emit: Callable[[AuditEvent], Any]) -> None:
        self._emit = emit

    def record(self, kind: str, action: str, target: str, before: BaseModel | None, after: BaseModel | None) -> None:
        started = time.perf_counter()
        self._emit(
            AuditEvent(
                kind="admin",
                actor=ACTOR.get(),
                action=f"{kind}.{action}",
                target=target,
                name=target,
                before=_json(before),
                after=_json(after),
                status="ok",
                latency_ms=(time.perf_counter() - started) * 1000,
            )
        )
