"""HTTP layer of analytics.

`POST /admin/v1/analytics/query`, `GET /admin/v1/analytics/panels/{name}` and the `/dashboard` page.

The query and panel routes need `analytics:read` and answer errors in the admin API's `ErrorBody`
shape. A query goes to the audit service (which owns ClickHouse) with `libs.common.analytics.asking.ask`,
naming the principal (its queries share that principal's allowance of concurrent queries) and
whether it may read payload columns (arguments, results: the principal's `audit:payloads`, the
auditor's, not the analyst's). The allow-list is checked here first, with the audit service's own
words, and again there. A caller that hangs up has its query stopped in the engine; "busy" is 503
with `Retry-After`. The dashboard page itself is static and public (it holds no data); it signs in
(or takes an API token) and reads the panels.

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

import asyncio
import contextlib
import math
import time
from importlib.resources import files
from typing import Annotated, Any, Literal

import nats.errors
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from nats.aio.client import Client as NATS
from pydantic import BaseModel, ConfigDict, Field

from libs.common.analytics.asking import ask
from libs.common.analytics.queries import (
    MAX_QUERY_ROWS,
    MAX_QUERY_SECONDS,
    MAX_SQL_CHARS,
    AnalyticsAnswer,
    AnalyticsQuery,
    NotReadOnly,
    TenantRows,
    read_only,
)
from libs.common.web.page_security import page_headers

from ..api.admin_route import bound_route
from ..api.auth import Authenticator, security_schemes
from ..api.errors import AdminError, documented, needs
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
        default_factory=dict,
        max_length=64,
        description="Values of the query's typed placeholders (`{name:String}`), sent apart from the SQL text; "
        "a parameter that no typed placeholder uses is refused.",
    )
    max_rows: int = Field(default=10_000, ge=1, le=MAX_QUERY_ROWS, description="Fail if the answer has more rows.")
    timeout: float = Field(default=10.0, gt=0, le=MAX_QUERY_SECONDS, description="Seconds the query may run.")


class QueryAnswer(BaseModel):
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]


_STATUS = {"refused": 422, "busy": 503, "limit": 400, "cancelled": 503, "failed": 400}
"""HTTP status of each `AnalyticsAnswer.error_kind`: the allow-list refused it (422, as the check here
would have), too many queries run (503, retry), a limit stopped it or the engine failed it (400)."""
_ERROR = {"refused": "not_read_only", "busy": "busy", "limit": "query_limit", "cancelled": "cancelled"}


def _payloads() -> bool:
    """Whether the caller may read payload columns: the auditor's permission, not the analyst's."""
    return current().grants.allows("audit:payloads")


def _tenant() -> TenantRows | None:
    """None for a principal holding `analytics:read` everywhere.

    Else the customers and teams its scoped bindings name, whose rows alone the engine lets its queries
    and panels read."""
    scopes = current().grants.scopes("analytics:read")
    if scopes is None:
        return None
    customers = sorted(scope.id for scope in scopes if scope.kind == "customer")
    return TenantRows(
        customers=tuple(customers), teams=tuple(sorted(scope.id for scope in scopes if scope.kind == "team"))
    )


async def _hung_up(request: Request) -> None:
    """Returns when the HTTP caller disconnects (the body is read by then: only `http.disconnect` is left)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _ask(nc: NATS, request: Request, query: AnalyticsQuery) -> QueryAnswer:
    """Ask the audit service as the calling principal; stop the query if the caller hangs up."""
    query = query.model_copy(update={"principal": current().principal, "payloads": _payloads(), "tenant": _tenant()})
    asking = asyncio.ensure_future(ask(nc, query))
    watching = asyncio.ensure_future(_hung_up(request))
    try:
        await asyncio.wait((asking, watching), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watching.cancel()
        if not asking.done():  # hung up (or we were cancelled): `ask` tells the service to stop the query
            asking.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asking
    if asking.cancelled():
        raise AdminError(503, "cancelled", "the caller went away; the query was stopped")
    try:
        answer: AnalyticsAnswer = asking.result()
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError, TimeoutError):
        unreachable = "no audit service answered in time; the query was stopped"
        raise AdminError(503, "analytics_unavailable", unreachable) from None
    if answer.error is not None:
        kind = answer.error_kind or "failed"
        headers = None
        if kind == "busy":
            headers = {"Retry-After": str(max(1, math.ceil(answer.retry_after or 1)))}
        raise AdminError(_STATUS[kind], _ERROR.get(kind, "query_failed"), answer.error, headers=headers)
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
    failed = {"model": ErrorBody, "description": "A limit stopped the query, or the engine failed it (it says why)"}
    busy = {"model": ErrorBody, "description": "Busy (retry after `Retry-After` seconds), or no audit service"}
    responses = documented(401, 403, 422) | {400: failed, 503: busy}
    read = needs("analytics:read")

    @router.post("/query", response_model=QueryAnswer, responses=responses, openapi_extra=read)
    async def query(body: QueryBody, request: Request) -> QueryAnswer:
        """Run one read-only SQL query on the analytics store (docs/analytics.md).

        The `bastion` database's tables, functions from the allow-list; payload columns only with
        `audit:payloads`."""
        try:
            read_only(body.sql, payloads=_payloads(), parameters=body.parameters)
        except NotReadOnly as exc:
            raise AdminError(422, "not_read_only", str(exc)) from None
        return await _ask(nc, request, AnalyticsQuery.model_validate(body.model_dump()))

    @router.get("/panels/{name}", response_model=QueryAnswer, responses=responses, openapi_extra=read)
    async def panel(
        request: Request,
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
        asked = AnalyticsQuery(sql=sql, parameters=params, max_rows=_PANEL_ROWS, timeout=_PANEL_SECONDS)
        return await _ask(nc, request, asked)

    return router


def dashboard_router(auth: Authenticator) -> APIRouter:
    """`GET /dashboard`: the page (static; its data comes from the panel routes, with a session or a token)."""
    router = APIRouter(route_class=bound_route(auth))
    page = _dashboard_html()
    headers = {**page_headers(page), "Cache-Control": "no-store"}  # its one inline script, by hash

    @router.get(DASHBOARD_PATH, response_class=HTMLResponse, include_in_schema=False, openapi_extra=needs(PUBLIC))
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)

    return router
