"""What a person finds at the admin service's address: a start page at `/` and the API index.

Both are built from the app's own routes, so they list what really answers; nothing here is
secret and nothing loads from another origin.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any

__all__ = ["admin_index", "start_page"]

_STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:42rem;margin:3rem auto;padding:0 1rem;color:#222}"
    "code{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}a{color:#0b5cad}"
    "li{margin:.3rem 0}.dim{color:#666}"
)

_LINKS = (
    ("/console", "Web console", "servers, catalog, keys, groups, LLM providers, live traffic, playground"),
    ("/dashboard", "Analytics dashboard", "calls, errors, latency, top tools, keys, recent events"),
    ("/docs", "Admin API reference", "every admin endpoint, with the permission each one needs"),
    ("/admin/v1", "Admin API index", "the resources the admin API manages, as JSON"),
)


def start_page(version: str) -> str:
    """A small self-contained HTML page: where the admin tools are."""
    items = "".join(
        f'<li><a href="{escape(href)}">{escape(title)}</a> <span class="dim">— {escape(what)}</span></li>'
        for href, title, what in _LINKS
    )
    return (
        "<!doctype html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Bastion admin</title><style>{_STYLE}</style></head><body>"
        f'<h1>Bastion admin <span class="dim">v{escape(version)}</span></h1>'
        f"<ul>{items}</ul>"
        "<p class='dim'>The API takes a principal's API token as <code>Authorization: Bearer &lt;token&gt;</code>; "
        "the <code>bastion</code> CLI finds the one <code>bastion up</code> made in its stack file.</p>"
        "</body></html>"
    )


def admin_index(prefix: str, paths: Iterable[str]) -> dict[str, Any]:
    """`GET /admin/v1`: the collections under `prefix` (from the registered route paths) and where the reference lives.

    Answered without the token: it says what exists, not what is in it."""
    collections = sorted(
        {
            path.removeprefix(prefix).strip("/").split("/", 1)[0]
            for path in paths
            if path.startswith(prefix + "/") and path.removeprefix(prefix).strip("/")
        }
    )
    return {
        "name": "Bastion admin API",
        "version": "v1",
        "authentication": "Authorization: Bearer <admin token>",
        "docs": "/docs",
        "openapi": "/openapi.json",
        "collections": {name: f"{prefix}/{name}" for name in collections},
    }
