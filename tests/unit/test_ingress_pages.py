"""The gateway's landing page: what it lists, and that it stays self-contained (the admin API index
and start page are the admin service's: test_admin_pages.py)."""

from __future__ import annotations

import re

import pytest

from services.ingress.web.pages import landing_page

pytestmark = pytest.mark.unit


def test_the_landing_page_names_the_mcp_url_and_links_only_to_this_gateway():
    page = landing_page("http://127.0.0.1:8420", "1.2.3")
    assert "<code>http://127.0.0.1:8420/mcp</code>" in page and "v1.2.3" in page
    # nothing of the admin side: it lives on the admin service's own address
    assert set(re.findall(r'href="([^"]+)"', page)) == {"/healthz"}
    assert "<script" not in page and "src=" not in page  # nothing to load, from anywhere


def test_the_landing_page_escapes_what_it_is_given():
    page = landing_page('http://evil"><script>x</script>', "0")
    assert "<script>" not in page and "&lt;script&gt;" in page
