"""The pages a person opens at the gateway's address, served by a real ingress: the landing page,
and nothing of the admin side (the admin API, its reference and the dashboard live on the admin
service's own address: test_admin_pages_served.py). `tests/e2e` fetches the banner's URLs."""

from __future__ import annotations

import re

import httpx
import pytest

from services.ingress.service import IngressService

pytestmark = pytest.mark.integration


@pytest.fixture
async def http(ingress: IngressService):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.port}", timeout=10, trust_env=False) as client:
        yield client


async def test_the_landing_page_shows_the_mcp_url(http: httpx.AsyncClient, ingress: IngressService) -> None:
    page = await http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f"http://127.0.0.1:{ingress.port}/mcp" in page.text
    for link in re.findall(r'href="([^"]+)"', page.text):
        assert (await http.get(link)).status_code == 200, link


async def test_the_public_gateway_serves_nothing_of_the_admin_side(http: httpx.AsyncClient) -> None:
    for path in ("/admin/v1", "/admin/v1/keys", "/admin/v1/analytics/panels/tools", "/dashboard", "/docs", "/metrics"):
        assert (await http.get(path)).status_code == 404, path
    assert (await http.get("/openapi.json")).status_code == 404


async def test_the_pages_honour_a_local_proxys_forwarded_scheme(
    http: httpx.AsyncClient, ingress: IngressService
) -> None:
    """Behind a proxy on this host (uvicorn's default trusted address), `X-Forwarded-Proto` names
    the scheme the agents use: every route but `/mcp` (which reads no scheme) sees it."""
    page = await http.get("/", headers={"X-Forwarded-Proto": "https"})
    assert f"https://127.0.0.1:{ingress.port}/mcp" in page.text
