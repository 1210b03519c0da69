"""HTTP layer of analytics: `POST /admin/v1/analytics/query`, `GET /admin/v1/analytics/panels/{name}`
and the `/dashboard` page.

The query and panel routes need `analytics:read` and answer errors in the admin API's `ErrorBody`
shape; whether a query may read payload columns (arguments, results) is the principal's
`audit:payloads` (the auditor's, not the analyst's), carried to the audit service with the
principal's name. Queries are checked read-only here and again by the audit service, which owns
ClickHouse and runs them (over NATS, `ANALYTICS_QUERY`). The dashboard page itself is static and
public (it holds no data); it signs in (or takes an API token) and reads the panels.

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

import time
from importlib.resources import files
from typing import Annotated, Any, Literal

import nats.errors
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import HTMLResponse
from nats.aio.client import Client as NATS
from pydantic import BaseModel, ConfigDict, Field

from libs.common import subjects
from libs.common.analytics import (
    MAX_QUERY_ROWS,
    MAX_QUERY_SECONDS,
    MAX_SQL_CHARS,
    AnalyticsAnswer,
    AnalyticsQuery,
    NotReadOnly,
    read_only,
)

from ..api.auth import Authenticator, security_schemes
from ..api.errors import AdminError, bound_route, documented, needs
from ..api.identity import current
from ..api.models import ErrorBody
from ..roles import PUBLIC
from .panels import PANELS, Filters, panel_query

__all__ = ["DASHBOARD_PATH", "analytics_router", "dashboard_router"]

DASHBOARD_PATH = "/dashboard"
_MAX_RANGE = 400 * 24 * 3600.0
_PANEL_ROWS = 5_000
_PANEL_SECONDS = 10.0


class QueryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sql: str = Field(min_length=1, max_length=MAX_SQL_CHARS, description="One SELECT (or WITH ... SELECT) query.")
    parameters: dict[str, str | int | float] = Field(
        default_factory=dict, max_length=64, description="Values for `{name:Type}` placeholders."
    )
    max_rows: int = Field(default=10_000, ge=1, le=MAX_QUERY_ROWS, description="Fail if the answer has more rows.")
    timeout: float = Field(default=10.0, gt=0, le=MAX_QUERY_SECONDS, description="Seconds the query may run.")


class QueryAnswer(BaseModel):
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]


async def _ask(nc: NATS, query: AnalyticsQuery) -> QueryAnswer:
    identity = current()
    query = query.model_copy(
        update={"principal": identity.principal, "payloads": identity.grants.allows("audit:payloads")}
    )
    try:
        reply = await nc.request(subjects.ANALYTICS_QUERY, query.model_dump_json().encode(), query.timeout + 5)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError, TimeoutError):
        unreachable = "no audit service answered; the analytics store is not reachable"
        raise AdminError(503, "analytics_unavailable", unreachable) from None
    answer = AnalyticsAnswer.model_validate_json(reply.data)
    if answer.error is not None:  # the SQL passed `read_only` here: the engine refused or failed it
        raise AdminError(400, "query_failed", answer.error)
    return QueryAnswer(columns=answer.columns, types=answer.types, rows=answer.rows)


def _dashboard_html() -> str:
    return files(__package__).joinpath("dashboard.html").read_text(encoding="utf-8")


def analytics_router(nc: NATS, auth: Authenticator) -> APIRouter:
    """The analytics routes the admin service mounts; `nc` is its NATS connection."""
    router = APIRouter(
        prefix="/admin/v1/analytics",
        route_class=bound_route(auth),
        tags=["analytics"],
        dependencies=[Depends(security_schemes)],
    )
    failed = {"model": ErrorBody, "description": "The engine refused or failed the query (its message says why)"}
    responses = documented(401, 403, 422, 503) | {400: failed}
    read = needs("analytics:read")

    @router.post("/query", response_model=QueryAnswer, responses=responses, openapi_extra=read)
    async def query(body: QueryBody) -> QueryAnswer:
        """Run one read-only SQL query on the analytics store (docs/analytics.md)."""
        try:
            read_only(body.sql)
        except NotReadOnly as exc:
            raise AdminError(422, "not_read_only", str(exc)) from None
        return await _ask(nc, AnalyticsQuery.model_validate(body.model_dump()))

    @router.get("/panels/{name}", response_model=QueryAnswer, responses=responses, openapi_extra=read)
    async def panel(
        name: Annotated[Literal[tuple(PANELS)], Path(description="Which dashboard panel.")],  # type: ignore[valid-type]  # the names are data
        since: Annotated[float | None, Query(description="Start, epoch seconds (default: 24 h before until).")] = None,
        until: Annotated[float | None, Query(description="End (exclusive), epoch seconds (default: now).")] = None,
        key: Annotated[str | None, Query(max_length=256)] = None,
        server: Annotated[str | None, Query(max_length=256)] = None,
        status: Annotated[Literal["ok", "tool_error", "error", "denied"] | None, Query()] = None,
        team: Annotated[str | None, Query(max_length=256)] = None,
    ) -> QueryAnswer:
        """One dashboard panel's data for a time range and filters (fixed SQL; the filters are parameters)."""
        end = time.time() if until is None else until
        start = end - 24 * 3600 if since is None else since
        if not 0 < end - start <= _MAX_RANGE:
            raise AdminError(422, "validation_error", "since must be before until, and the range at most 400 days")
        sql, params = panel_query(name, Filters(start, end, key or None, server or None, status, team or None))
        return await _ask(nc, AnalyticsQuery(sql=sql, parameters=params, max_rows=_PANEL_ROWS, timeout=_PANEL_SECONDS))

    return router


def dashboard_router(auth: Authenticator) -> APIRouter:
    """`GET /dashboard`: the page (static; its data comes from the panel routes, with a session or a token)."""
    router = APIRouter(route_class=bound_route(auth))
    page = _dashboard_html()

    @router.get(DASHBOARD_PATH, response_class=HTMLResponse, include_in_schema=False, openapi_extra=needs(PUBLIC))
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})

    return router
