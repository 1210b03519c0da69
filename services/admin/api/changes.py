"""Admin changes as audit events: who changed which record, and how it read before and after.

Who is the request's identity (`identity.CURRENT`: the principal, its roles, its address), set per
request by `admin_route.AdminRoute`; `Table` reports each write it made. Before/after are the records as
JSON with every secret redacted (`services.admin.api.redaction`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from libs.common.audit.audit_content import to_json
from libs.common.contracts.messages import AuditEvent
from services.admin.api.redaction import redacted

from .identity import CURRENT

__all__ = ["ChangeLog"]


def _json(record: BaseModel | None) -> str | None:
    return None if record is None else to_json(redacted(record.model_dump(mode="json")))


class ChangeLog:
    def __init__(self, emit: Callable[[AuditEvent], Any]) -> None:
        self._emit = emit

    def record(self, kind: str, action: str, target: str, before: BaseModel | None, after: BaseModel | None) -> None:
        started = time.perf_counter()
        identity = CURRENT.get()
        self._emit(
            AuditEvent(
                kind="admin",
                actor=identity.principal if identity is not None else "admin",
                actor_role=identity.role_label if identity is not None else None,
                actor_address=identity.address if identity is not None else None,
                action=f"{kind}.{action}",
                tool=f"{kind}.{action}",  # what the dashboard's operations panel names it by
                target=target,
                name=target,
                before=_json(before),
                after=_json(after),
                status="ok",
                latency_ms=(time.perf_counter() - started) * 1000,
            )
        )
