"""Every page the admin service serves carries its security headers: a Content-Security-Policy that
runs no inline script but the page's own (by hash), refuses plugins, `<base>` and framing, and
`X-Frame-Options`, `X-Content-Type-Options`, `Referrer-Policy`. The routes are read from the running
app, so a page added later is checked without touching this test; and the pages still work under
their policy in a real Chromium (the reference's Swagger UI, the console, the dashboard, the start
page) with nothing refused. The gateway's landing page too."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.routing import APIRoute
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route

from libs.common.web.http_serving import serve_http
from libs.common.web.page_security import CSP, content_security_policy, inline_scripts
from services.admin.routing import flat_routes
from services.admin.service import AdminService
from services.ingress.service import IngressService
from tests.support.adminapi_stack import module_admin
from tests.support.console_browser import browser
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

PAGES = {"/", "/docs", "/docs/oauth2-redirect", "/dashboard", "/console", "/login", "/login/callback"}
"""The HTML pages there are today: the enumeration must find at least these."""


@pytest.fixture(scope="module")
async def admin_and_owner(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[AdminService, str]]:
    """Every test here only reads pages: one admin service for the module (what `admin` and
    `admin_pages` are made from), not one per test."""
    async with module_admin(tmp_path_factory.mktemp("pages")) as stack:
        yield stack.admin, stack.owner_token


def _get_paths(admin: AdminService) -> list[str]:
    """A URL for every GET route of the app (path parameters filled with a name that matches nothing)."""
    assert admin.app is not None
    paths = []
    for route in flat_routes(admin.app.routes):
        if isinstance(route, Mount):
            paths.append(f"{route.path}/swagger-ui.css")  # the reference's assets
        elif isinstance(route, APIRoute) and "GET" in route.methods:
            paths.append(re.sub(r"\{[^}]+\}", "nothing-here", route.path))
    return paths


def _directives(policy: str) -> dict[str, list[str]]:
    found = {}
    for part in policy.split(";"):
        name, *values = part.split()
        found[name] = values
    return found


def assert_protected(answer: httpx.Response) -> None:
    where = f"{answer.request.method} {answer.request.url.path} ({answer.status_code})"
    headers = answer.headers
    assert headers.get("x-frame-options") == "DENY", where
    assert headers.get("x-content-type-options") == "nosniff", where
    assert headers.get("referrer-policy") == "no-referrer", where
    policy = _directives(headers.get(CSP, ""))
    assert policy.get("frame-ancestors") == ["'none'"], where
    assert policy.get("object-src") == ["'none'"], where
    assert policy.get("base-uri") == ["'none'"], where
    scripts = policy.get("script-src", [])
    assert scripts and "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts and "*" not in scripts, where
    if headers.get("content-type", "").startswith("text/html"):
        # every inline script of the page is allowed by its own hash, and nothing more is
        hashes = [s for s in scripts if s.startswith("'sha256-")]
        assert headers[CSP] == content_security_policy(answer.text), where
        assert len(hashes) == len(set(inline_scripts(answer.text))), where


async def test_every_page_of_the_admin_service_carries_the_headers(
    admin: AdminService, admin_pages: httpx.AsyncClient
) -> None:
    html = set()
    for path in _get_paths(admin):
        answer = await admin_pages.get(path)
        assert_protected(answer)
        if answer.headers.get("content-type", "").startswith("text/html"):
            html.add(path)
    assert html >= PAGES, f"pages not found as HTML: {PAGES - html}"
    # answers the routes do not make (an unknown path, a wrong method) too
    assert_protected(await admin_pages.get("/no/such/page"))
    assert_protected(await admin_pages.post("/docs"))


async def test_the_pages_with_scripts_allow_exactly_their_own(admin_pages: httpx.AsyncClient) -> None:
    for path, inline in (("/docs", 1), ("/docs/oauth2-redirect", 1), ("/dashboard", 1), ("/console", 1), ("/", 0)):
        answer = await admin_pages.get(path)
        assert len(inline_scripts(answer.text)) == inline, path
        assert answer.headers[CSP].count("'sha256-") == inline, path


async def test_the_pages_work_under_their_policy_in_chromium(admin: AdminService, tmp_path: Path) -> None:
    async with browser(tmp_path / "profile") as page:
        await page.open(f"{admin.url}/docs")
        # Swagger UI ran (the inline init allowed by its hash) and drew the operations from /openapi.json
        await page.wait("document.querySelectorAll('.opblock').length > 50", "the reference's operations")
        assert await page.csp_violations() == [], "the reference"
        for path, drawn in (
            ("/", "!!document.querySelector('h1')"),
            ("/dashboard", "document.body.dataset.state === 'login'"),
            ("/console", "!!document.querySelector('#bastion-nav, main, form')"),
        ):
            await page.open(f"{admin.url}{path}")
            await page.wait(drawn, f"{path} drawn")
            assert await page.csp_violations() == [], path
        assert page.errors == []


_INJECT = """(() => { const s = document.createElement("script"); s.textContent = "window.__pwned = 1";
  document.body.append(s); return true; })()"""


async def test_an_injected_script_and_a_framing_page_are_refused_in_chromium(
    admin: AdminService, tmp_path: Path
) -> None:
    """What an injection would add to a page does not run, and a page elsewhere cannot frame one."""
    hostile_page = "".join(f'<iframe src="{admin.url}{path}"></iframe>' for path in ("/console", "/docs", "/"))
    hostile = Starlette(routes=[Route("/", lambda _: HTMLResponse(hostile_page))])
    serving = await serve_http(uvicorn.Config(hostile, host="127.0.0.1", port=0, log_level="warning"), "hostile")
    try:
        async with browser(tmp_path / "profile") as page:
            await page.open(f"{admin.url}/docs")
            await page.wait("document.querySelectorAll('.opblock').length > 0", "the reference")
            assert await page.evaluate(_INJECT)
            await page.wait("window.__cspViolations.length > 0", "the injected script refused")
            assert await page.evaluate("window.__pwned") is None
            await page.open(f"http://127.0.0.1:{serving.port}/")
            await page.wait("document.querySelectorAll('iframe').length === 3", "the framing page")
            await poll_until(lambda: sum("frame-ancestors" in line for line in page.logged) >= 3, "3 frames refused")
    finally:
        await serving.stop()


async def test_the_gateways_landing_page_carries_the_headers(ingress: IngressService) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.port}", timeout=10, trust_env=False) as http:
        answer = await http.get("/")
    assert answer.headers["content-type"].startswith("text/html")
    assert_protected(answer)
