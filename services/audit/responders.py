"""What the audit service answers over NATS, as typed FastStream handlers on one router:
`AUDIT_QUERY` (recent events), `AUDIT_EXPORT` (a page of an export), `ANALYTICS_QUERY` (one
read-only SQL query) and `AUDIT_VERIFY` (hash chains and checkpoints).

Each handler takes its contract model (`libs.common.messages`, `libs.common.analytics`) and
returns its answer model; FastStream validates the request and sends the answer to the reply
subject. A request that is not its model is still answered, with an error saying what is wrong
(`_invalid`), so a caller never waits for a reply that will not come. The store is synchronous and
runs in a thread; answers larger than a NATS message are cut or replaced by an error that says how
to ask for less.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from fast_depends.exceptions import ValidationError as DependsValidationError
from faststream import ExceptionMiddleware
from faststream.nats import NatsRouter
from pydantic import BaseModel, ValidationError

from libs.common import subjects
from libs.common.analytics import (
    AnalyticsAnswer,
    AnalyticsQuery,
    ExportPage,
    ExportRows,
    NotReadOnly,
    read_only,
)
from libs.common.messages import AuditQuery, AuditRows, AuditVerdict, AuditVerify

from .auditor import Auditor
from .errors import StoreUnavailable
from .store import ClickHouseStore

__all__ = ["Responders"]

M = TypeVar("M", bound=BaseModel)


def _invalid(exc: Exception) -> dict[str, Any]:
    """The answer to a request that is not its contract: every answer model reads it as an error."""
    errors = exc.errors() if isinstance(exc, ValidationError) else getattr(exc, "errors", lambda: [])()
    first = errors[0] if errors else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "request"))
    what = first.get("msg", str(exc))
    return {"ok": False, "error": f"invalid request: {where}: {what}" if where else f"invalid request: {what}"}


class Responders:
    """The audit service's request/reply subjects (queue group `audit`) over `store` and `auditor`;
    `max_payload` is the connection's largest message (known once connected)."""

    def __init__(self, store: ClickHouseStore, auditor: Auditor, max_payload: Callable[[], int]) -> None:
        self.store, self.auditor, self._max_payload = store, auditor, max_payload
        errors = ExceptionMiddleware(publish_handlers={ValidationError: _invalid, DependsValidationError: _invalid})
        self.router = NatsRouter(middlewares=[errors])
        for subject, handler, title in (
            (subjects.AUDIT_QUERY, self.query, "recent audit events"),
            (subjects.AUDIT_EXPORT, self.export, "one page of an audit export"),
            (subjects.ANALYTICS_QUERY, self.analytics, "one read-only SQL query"),
            (subjects.AUDIT_VERIFY, self.verify, "check the hash chains and checkpoints"),
        ):
            self.router.subscriber(subject, queue=subjects.QUEUE_AUDIT, title=subject, description=title)(handler)

    # every handler names its parameter `request`: error locations start with it (`_invalid` drops it)

    async def query(self, request: AuditQuery) -> AuditRows:
        try:
            answer = AuditRows(rows=await asyncio.to_thread(self.store.recent, request))
        except StoreUnavailable as exc:
            return AuditRows(error=str(exc))
        while answer.rows and self._size(answer) > self._max_payload():  # halve until it fits
            answer = AuditRows(
                rows=answer.rows[: len(answer.rows) // 2],
                error="truncated: rows exceed the NATS max payload; ask for fewer",
            )
        return answer

    async def export(self, request: ExportPage) -> ExportRows:
        try:
            answer = ExportRows(rows=await asyncio.to_thread(self.store.page, request))
        except StoreUnavailable as exc:
            return ExportRows(error=str(exc))
        return self._fitting(answer, "the page ({size} bytes) exceeds the NATS max payload; ask for fewer rows")

    async def analytics(self, request: AnalyticsQuery) -> AnalyticsAnswer:
        try:
            sql = read_only(request.sql)
            answer = await asyncio.to_thread(self.store.select, request, sql)
        except (NotReadOnly, StoreUnavailable) as exc:
            return AnalyticsAnswer(error=str(exc))
        too_big = "the answer ({size} bytes) exceeds the NATS max payload; add a LIMIT or fewer columns"
        return self._fitting(answer, too_big)

    async def verify(self, request: AuditVerify) -> AuditVerdict:
        try:
            return await asyncio.to_thread(self.auditor.verify, request.since)
        except StoreUnavailable as exc:
            return AuditVerdict(ok=False, error=str(exc))

    def _fitting(self, answer: M, too_big: str) -> M:
        """`answer`, or (when it would not fit one NATS message) an error saying how to ask for less."""
        size = self._size(answer)
        if size <= self._max_payload():
            return answer
        return type(answer).model_validate({"error": too_big.format(size=size)})

    @staticmethod
    def _size(answer: BaseModel) -> int:
        return len(answer.model_dump_json().encode()) + 256  # headers and envelope
