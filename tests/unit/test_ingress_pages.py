"""The landing page and the admin API index: what they list, and that they stay self-contained."""

from __future__ import annotations

import re

import pytest

from services.ingress.pages import admin_index, landing_page

pytestmark = pytest.mark.unit


def test_the_landing_page_names_the_mcp_url_and_links_only_to_this_gateway():
    page = landing_page("http://127.0.0.1:8420", "1.2.3")
    assert "<code>http://127.0.0.1:8420/mcp</code>" in page and "v1.2.3" in page
    assert set(re.findall(r'href="([^"]+)"', page)) == {"/docs", "/admin/v1", "/dashboard", "/healthz"}
    assert "<script" not in page and "src=" not in page  # nothing to load, from anywhere


def test_the_landing_page_escapes_what_it_is_given():
    page = landing_page('http://evil"><script>x</script>', "0")
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_the_admin_index_lists_each_collection_once():
    paths = ["/docs", "/admin/v1/keys", "/admin/v1/keys/{key_id}", "/admin/v1/keys/{key_id}/rotate", "/admin/v1/groups"]
    index = admin_index("/admin/v1", [*paths, "/admin/v1", "/admin/v1x/other", "/healthz"])
    assert index["collections"] == {"groups": "/admin/v1/groups", "keys": "/admin/v1/keys"}
    assert index["docs"] == "/docs" and "token" in index["authentication"]
