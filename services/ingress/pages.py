"""What a person finds at the gateway's address: the landing page at `/` and the admin API index.

Both are built from the app's own routes, so they list what really answers; nothing here is
secret (no keys, no token, no upstream address) and nothing loads from another origin.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any

__all__ = ["admin_index", "landing_page"]

_STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:42rem;margin:3rem auto;padding:0 1rem;color:#222}"
    "code{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}a{color:#0b5cad}"
    "li{margin:.3rem 0}.dim{color:#666}"
)


def landing_page(base_url: str, version: str) -> str:
    """A small self-contained HTML page: what Bastion is, the MCP URL, where to go next."""
    mcp = escape(f"{base_url}/mcp")
    links = [
        ("/docs", "Admin API reference", "every admin endpoint, try them with the admin token"),
        ("/admin/v1", "Admin API index", "the resources the admin API manages, as JSON"),
        ("/dashboard", "Analytics dashboard", "calls, errors, latency, top tools, keys, recent events"),
        ("/healthz", "Health", "whether this gateway is connected and how many tools it serves"),
    ]
    items = "".join(
        f'<li><a href="{escape(href)}">{escape(title)}</a> <span class="dim">— {escape(what)}</span></li>'
        for href, title, what in links
    )
    return (
        "<!doctype html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Bastion MCP gateway</title><style>{_STYLE}</style></head><body>"
        f'<h1>Bastion <span class="dim">v{escape(version)}</span></h1>'
        "<p>An MCP gateway: AI agents connect to one endpoint with one key and get every tool they are "
        "allowed to use from the MCP servers behind it, governed and audited.</p>"
        f"<h2>Connect an agent</h2><p>MCP URL (streamable HTTP): <code>{mcp}</code><br>"
        "Send a key as <code>Authorization: Bearer &lt;key&gt;</code>.</p>"
        f"<p class='dim'>For example: <code>claude mcp add --transport http bastion {mcp} "
        "--header &quot;Authorization: Bearer &lt;key&gt;&quot;</code></p>"
        f"<h2>Manage it</h2><ul>{items}</ul>"
        "<p class='dim'>The admin API needs the admin token (<code>bastion up</code> writes it to its stack "
        "file; the <code>bastion</code> CLI finds it there); the dashboard also takes an analyst token, "
        "which reads analytics only.</p>"
        "</body></html>"
    )


def admin_index(prefix: str, paths: Iterable[str]) -> dict[str, Any]:
    """`GET /admin/v1`: the collections under `prefix` (from the registered route paths) and where
    the reference lives. Answered without the token: it says what exists, not what is in it."""
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
