"""The pages a person opens at the admin service's address, served by a real admin service: its
start page, the API index (no token needed to learn what exists), /docs with its assets from the
service itself (it works offline) and the self-contained dashboard."""

from __future__ import annotations

import re

import httpx
import pytest

pytestmark = pytest.mark.integration


async def test_the_admin_api_index_answers_without_a_token(admin_pages: httpx.AsyncClient) -> None:
    index = await admin_pages.get("/admin/v1")
    assert index.status_code == 200
    collections = index.json()["collections"]
    assert {"keys", "groups", "servers", "users", "teams", "customers", "analytics"} <= set(collections)
    assert (await admin_pages.get(collections["keys"])).status_code == 401  # what is in them still needs it


async def test_docs_load_every_asset_from_the_admin_service(admin_pages: httpx.AsyncClient) -> None:
    docs = await admin_pages.get("/docs")
    assert docs.status_code == 200
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", docs.text)
    assert any(a.endswith(".js") for a in assets) and all(a.startswith("/docs/assets/") for a in assets), assets
    for asset in assets:
        assert (await admin_pages.get(asset)).status_code == 200, asset
    assert (await admin_pages.get("/openapi.json")).json()["paths"]


async def test_every_start_page_link_answers_and_the_dashboard_is_self_contained(
    admin_pages: httpx.AsyncClient,
) -> None:
    page = (await admin_pages.get("/")).text
    links = re.findall(r'href="([^"]+)"', page)
    assert "/dashboard" in links
    for link in links:
        assert (await admin_pages.get(link)).status_code == 200, link
    dashboard = await admin_pages.get("/dashboard")
    assert dashboard.headers["content-type"].startswith("text/html")
    linked = re.findall(r"""(?:src|href)=['"]([^'"#]+)['"]""", dashboard.text)
    # its scripts and styles are inline but for the navigation it shares with the console: it works offline
    assert linked == ["/console/nav.css", "/console/nav.js", "/login?next=/dashboard"], linked
    for asset in linked[:2]:
        assert (await admin_pages.get(asset)).status_code == 200, asset
