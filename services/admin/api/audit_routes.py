"""`/admin/v1/audit/verify` and `/admin/v1/audit/export`.

The auditor's checks over HTTP (the CLI's `bastion audit verify|export` ask the audit service the same
way, over NATS, as the admin role).

An export carries tool arguments and results, and admin changes' before and after, only for a
principal holding `audit:payloads`; for anyone else those fields are emptied here (their sha256
digests stay: the trail still proves what was sent without showing it).

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

import time
from typing import Annotated

import nats.errors
from fastapi import APIRouter, Query
from nats.aio.client import Client as NATS
from pydantic import BaseModel, ConfigDict, Field

from libs.common.analytics.queries import MAX_EXPORT_PAGE, ExportPage, ExportRows
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent, AuditVerdict, AuditVerify

from .auth import Authenticator
from .errors import AdminError
from .identity import current
from .route_table import Route, register
from .routes import api_router

__all__ = ["audit_routes"]

_PAYLOADS = {"arguments": None, "result": None, "before": None, "after": None}
_VERIFY_SECONDS = 120.0
_EXPORT_SECONDS = 30.0


class VerifyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: float | None = Field(default=None, description="Check only events at or after this Unix time.")


class ExportAnswer(BaseModel):
    rows: list[AuditEvent]
    """Oldest first; ask again with the last row's `ts` and `event_id` as `after_ts` / `after_id`."""
    payloads: bool
    """Whether arguments, results, before and after are included (the `audit:payloads` permission)."""


async def _request(nc: NATS, subject: str, body: BaseModel, within: float) -> bytes:
    try:
        reply = await nc.request(subject, body.model_dump_json().encode(), within)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError, TimeoutError):
        raise AdminError(
            503, "audit_unavailable", "no audit service answered; the audit store is not reachable"
        ) from None
    return bytes(reply.data)


async def verify(nc: NATS, body: VerifyBody) -> AuditVerdict:
    """Check the stored events against their hash chains and signed checkpoints.

    OK, or the first tampered row (`bastion audit verify`)."""
    reply = await _request(nc, subjects.AUDIT_VERIFY, AuditVerify(since=body.since), _VERIFY_SECONDS)
    return AuditVerdict.model_validate_json(reply)


async def export(
    nc: NATS,
    since: Annotated[float, Query(description="Start, epoch seconds.")],
    until: Annotated[float | None, Query(description="End (exclusive), epoch seconds; default now.")] = None,
    after_ts: Annotated[float | None, Query(description="The cursor: the previous page's last `ts`.")] = None,
    after_id: Annotated[str, Query(max_length=64, description="... and its last `event_id`.")] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_EXPORT_PAGE)] = MAX_EXPORT_PAGE,
) -> ExportAnswer:
    """One page of audit events, oldest first (`bastion audit export`)."""
    page = ExportPage(
        since=since,
        until=time.time() if until is None else until,
        after_ts=after_ts,
        after_id=after_id,
        limit=limit,
    )
    answer = ExportRows.model_validate_json(await _request(nc, subjects.AUDIT_EXPORT, page, _EXPORT_SECONDS))
    if answer.error is not None:
        raise AdminError(503, "audit_unavailable", answer.error)
    payloads = current().grants.allows("audit:payloads")
    rows = answer.rows if payloads else [row.model_copy(update=_PAYLOADS) for row in answer.rows]
    return ExportAnswer(rows=rows, payloads=payloads)


AUDIT_ROUTES = (
    Route("POST", "/audit/verify", "audit:verify", verify, errors=(422, 503)),
    Route("GET", "/audit/export", "audit:export", export, errors=(422, 503)),
)


def audit_routes(nc: NATS, auth: Authenticator) -> APIRouter:
    router = api_router(auth)
    register(router, AUDIT_ROUTES, "audit", nc)
    return router
