"""The admin service's HTTP app: the admin API, analytics, the dashboard, `/docs`, the index and
`/healthz`, built from its NATS connection and settings."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from nats.aio.client import Client as NATS

from libs.common.messages import AuditEvent
from libs.common.sealing import Sealer
from libs.common.settings import AdminSettings

from .analytics import AnalyticsAuth, analytics_router, dashboard_router
from .api import PREFIX, AdminStore, admin_api
from .pages import admin_index, start_page
from .routing import flat_routes

__all__ = ["VERSION", "build_app"]

VERSION = version("bastion-gateway")


def build_app(nc: NATS, settings: AdminSettings, audit: Callable[[AuditEvent], Any]) -> FastAPI:
    # /docs serves Swagger UI from the fastapi-offline wheel: it works without internet access
    app: FastAPI = FastAPIOffline(
        title="Bastion admin API", version=VERSION, docs_url="/docs", redoc_url=None, static_url="/docs/assets"
    )
    js = nc.jetstream()
    admin = admin_api(js, settings.admin_token, Sealer(settings.secrets_key), nc=nc, audit=audit)
    app.include_router(admin)
    analytics_auth = AnalyticsAuth(settings.admin_token, settings.analyst_token, AdminStore(js))
    app.include_router(analytics_router(nc, analytics_auth))
    app.include_router(dashboard_router())
    index = admin_index(PREFIX, [getattr(route, "path", "") for route in flat_routes(app.routes)])
    page = start_page(VERSION)

    @app.get("/", include_in_schema=False)
    async def start() -> HTMLResponse:
        return HTMLResponse(page)

    # a map of the API rather than a part of it: kept out of the OpenAPI document it points to
    @app.get(PREFIX, include_in_schema=False)
    async def admin_api_index() -> dict[str, Any]:
        return index

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        ready = nc.is_connected
        return JSONResponse({"status": "ok" if ready else "starting"}, status_code=200 if ready else 503)

    return app
