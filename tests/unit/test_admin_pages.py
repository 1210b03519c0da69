"""The admin service's start page and API index: what they list, and that they stay self-contained."""

from __future__ import annotations

import re

import pytest

from services.admin.pages import admin_index, start_page

pytestmark = pytest.mark.unit


def test_the_start_page_links_only_to_the_admin_service():
    page = start_page("1.2.3")
    assert "v1.2.3" in page
    assert set(re.findall(r'href="([^"]+)"', page)) == {"/docs", "/admin/v1", "/dashboard", "/console"}
    assert "<script" not in page and "src=" not in page


def test_the_admin_index_lists_each_collection_once():
    paths = ["/docs", "/admin/v1/keys", "/admin/v1/keys/{key_id}", "/admin/v1/keys/{key_id}/rotate", "/admin/v1/groups"]
    index = admin_index("/admin/v1", [*paths, "/admin/v1", "/admin/v1x/other", "/healthz"])
    assert index["collections"] == {"groups": "/admin/v1/groups", "keys": "/admin/v1/keys"}
    assert index["docs"] == "/docs" and "token" in index["authentication"]
