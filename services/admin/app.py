"""The admin service's HTTP app.

The admin API, principals and roles, the audit routes, analytics, the dashboard, the browser sign-in,
`/docs`, the index and `/healthz`.

Every route is an `AdminRoute` that declares its permission (or `public`), except the OpenAPI document
and the reference's assets (`DOCS_PATHS`); `tests/integration/test_admin_roles.py` checks each role
against every route of this app, so a route added without a permission fails the suite. Every
response carries the page security headers (`libs.common.web.page_security`; a page with inline scripts
allows exactly those by their hash).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from nats.aio.client import Client as NATS
from starlette.exceptions import HTTPException

from libs.common.contracts.messages import AuditEvent
from libs.common.runtime.package_version import bastion_version
from libs.common.runtime.refusals import RefusalLog
from libs.common.runtime.sealing import Sealer
from libs.common.settings import AdminSettings
from libs.common.web.page_security import PageSecurity

from .analytics import analytics_router, dashboard_router
from .api import PREFIX, AdminStore, Authenticator, ChangeLog, admin_api
from .api.access_routes import access_routes
from .api.admin_route import bound_route, error_response
from .api.audit_routes import audit_routes
from .api.errors import AdminError, needs
from .api.registry_client import RegistryClient
from .console import console_api, console_pages
from .console.app_frames import AppFrames
from .login import OAuthLogin, login_router
from .pages import admin_index, start_page
from .reference import ASSETS_PATH, OPENAPI_PATH, reference_router
from .roles import PUBLIC
from .routing import flat_routes

__all__ = ["DOCS_PATHS", "VERSION", "build_app"]

VERSION = bastion_version()
DOCS_PATHS: Final = frozenset({OPENAPI_PATH, ASSETS_PATH})
"""FastAPI's own routes (the OpenAPI document, the reference's assets): public, and not `AdminRoute`s."""


_UNROUTED = {404: ("not_found", "no such route"), 405: ("method_not_allowed", "this route does not take that method")}


async def _unrouted(request: Request, exc: Exception) -> JSONResponse:
    """What the router refuses before any route runs (no path matches, or not with this method) is an `ErrorBody` too.

    As the schema documents every error: a path parameter that a route's pattern cannot hold (a tool name
    with a line break) lands here, not in the route."""
    assert isinstance(exc, HTTPException)
    error, message = _UNROUTED.get(exc.status_code, ("http_error", str(exc.detail)))
    said = f"{message}: {request.method} {request.url.path[:200]}"
    return error_response(AdminError(exc.status_code, error, said, headers=dict(exc.headers or {})))


def build_app(
    nc: NATS,
    settings: AdminSettings,
    audit: Callable[[AuditEvent], Any],
    local_url: Callable[[], str],
    refusals: RefusalLog | None = None,
) -> FastAPI:
    """`audit` takes an event per admin change; `local_url()` is this replica's own address once it listens.

    `refusals` counts and audits the requests refused for their credential."""
    # the reference's assets come from the fastapi-offline wheel; its pages are `reference_router`'s
    app: FastAPI = FastAPIOffline(
        title="Bastion admin API", version=VERSION, docs_url=None, redoc_url=None, static_url=ASSETS_PATH
    )
    app.add_middleware(PageSecurity)
    app.add_exception_handler(HTTPException, _unrouted)
    changes = ChangeLog(audit)
    store = AdminStore(nc.jetstream(), Sealer(settings.secrets_key), changes)
    auth = Authenticator(store, settings.admin_bootstrap_token, refusals, audit)
    frames = AppFrames()  # the playground's app frames: read by the API, served by the pages
    for router in (
        admin_api(store, auth, nc, changes, RegistryClient(settings.registries, settings.registry_timeout)),
        access_routes(store, auth, settings.admin_token_days),
        audit_routes(nc, auth),
        analytics_router(nc, auth),
        dashboard_router(auth),
        login_router(OAuthLogin(nc, store, settings, changes, local_url), auth),
        console_api(
            store, auth, settings.public_url, settings.egress.allow_private_hosts, frames
        ),  # the web console (docs/console.md)
        console_pages(auth, frames),
        reference_router(auth, app.title),
    ):
        app.include_router(router)
    index = admin_index(PREFIX, [getattr(route, "path", "") for route in flat_routes(app.routes)])
    page = start_page(VERSION)
    pages = APIRouter(route_class=bound_route(auth))
    public = needs(PUBLIC)

    @pages.get("/", include_in_schema=False, openapi_extra=public)
    async def start() -> HTMLResponse:
        return HTMLResponse(page)

    # a map of the API rather than a part of it: kept out of the OpenAPI document it points to
    @pages.get(PREFIX, include_in_schema=False, openapi_extra=public)
    async def admin_api_index() -> dict[str, Any]:
        return index

    @pages.get("/healthz", openapi_extra=public)
    async def healthz() -> JSONResponse:
        ready = nc.is_connected
        return JSONResponse({"status": "ok" if ready else "starting"}, status_code=200 if ready else 503)

    app.include_router(pages)
    return app
