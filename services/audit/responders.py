"""What the audit service answers over NATS, as typed FastStream handlers on one router.

`AUDIT_QUERY` (recent events), `AUDIT_EXPORT` (a page of an export), `ANALYTICS_QUERY` (one read-only SQL
query, run by `queries.AnalyticsRunner`), `ANALYTICS_CANCEL` (its caller gave up) and `AUDIT_VERIFY`
(hash chains, checkpoints and who vouches for each chain).

Each subscriber handles its own messages; the analytics one handles several at once (more than
the runner admits, so a query beyond them is answered "busy" at once instead of waiting behind a
long one).

Each handler takes its contract model (`libs.common.contracts.messages`, `libs.common.analytics.queries`) and
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

from libs.common.analytics.queries import AnalyticsAnswer, AnalyticsCancel, AnalyticsQuery, ExportPage, ExportRows
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditQuery, AuditRows, AuditVerdict, AuditVerify

from .auditor import Auditor
from .errors import StoreUnavailable
from .queries import WAITING, AnalyticsRunner
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
    """The audit service's request/reply subjects (queue group `audit`) over `store` and `auditor`.

    `max_payload` is the connection's largest message (known once connected)."""

    def __init__(
        self, store: ClickHouseStore, auditor: Auditor, runner: AnalyticsRunner, max_payload: Callable[[], int]
    ) -> None:
        self.store, self.auditor, self.runner, self._max_payload = store, auditor, runner, max_payload
        errors = ExceptionMiddleware(publish_handlers={ValidationError: _invalid, DependsValidationError: _invalid})
        self.router = NatsRouter(middlewares=[errors])
        at_once = runner.limits.queries + WAITING + 4  # running, waiting for a slot, and answering "busy"
        for subject, handler, title, workers, queue in (
            (subjects.AUDIT_QUERY, self.query, "recent audit events", 1, subjects.QUEUE_AUDIT),
            (subjects.AUDIT_EXPORT, self.export, "one page of an audit export", 1, subjects.QUEUE_AUDIT),
            (subjects.ANALYTICS_QUERY, self.analytics, "one read-only SQL query", at_once, subjects.QUEUE_AUDIT),
            (subjects.ANALYTICS_CANCEL, self.cancel, "stop a query whose caller gave up", 1, ""),  # every replica
            (subjects.AUDIT_VERIFY, self.verify, "check the hash chains and checkpoints", 1, subjects.QUEUE_AUDIT),
        ):
            self.router.subscriber(subject, queue=queue, title=subject, description=title, max_workers=workers)(handler)

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
        answer = await self.runner.run(request)
        too_big = "the answer ({size} bytes) exceeds the NATS max payload; add a LIMIT or fewer columns"
        return self._fitting(answer, too_big)

    async def cancel(self, request: AnalyticsCancel) -> None:
        await self.runner.cancel(request.query_id)

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
        return type(answer).model_validate({"error": too_big.format(size=size), "error_kind": "limit"})

    @staticmethod
    def _size(answer: BaseModel) -> int:
        return len(answer.model_dump_json().encode()) + 256  # headers and envelope
