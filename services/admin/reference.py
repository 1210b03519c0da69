"""The admin API's reference.

Swagger UI at `/docs` (its scripts and styles from the fastapi-offline wheel, served under
`/docs/assets`: it works without internet access) and the page its OAuth flow returns to.

Both pages are built once, here, so their inline scripts are known and allowed by their hash
(`libs.common.web.page_security`); the online validator is off (it would load an image from elsewhere).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse

from libs.common.web.page_security import page_headers

from .api.admin_route import bound_route
from .api.auth import Authenticator
from .api.errors import needs
from .roles import PUBLIC

__all__ = ["ASSETS_PATH", "DOCS_PATH", "OPENAPI_PATH", "reference_router"]

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
OPENAPI_PATH = "/openapi.json"
_REDIRECT_PATH = "/docs/oauth2-redirect"


def _text(page: HTMLResponse) -> str:
    return bytes(page.body).decode()


def reference_router(auth: Authenticator, title: str) -> APIRouter:
    router = APIRouter(route_class=bound_route(auth))
    public = needs(PUBLIC)
    docs = _text(
        get_swagger_ui_html(
            openapi_url=OPENAPI_PATH,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=_REDIRECT_PATH,
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )
    )
    redirect = _text(get_swagger_ui_oauth2_redirect_html())

    @router.get(DOCS_PATH, response_class=HTMLResponse, include_in_schema=False, openapi_extra=public)
    async def reference() -> HTMLResponse:
        return HTMLResponse(docs, headers=page_headers(docs))

    @router.get(_REDIRECT_PATH, response_class=HTMLResponse, include_in_schema=False, openapi_extra=public)
    async def oauth2_redirect() -> HTMLResponse:
        return HTMLResponse(redirect, headers=page_headers(redirect))

    return router
