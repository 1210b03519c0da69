"""What a person finds at the gateway's address: the landing page at `/`.

Nothing here is secret (no keys, no token, no upstream address) and nothing loads from another
origin. The admin API, its reference and the dashboard are not here: the admin service serves them
on its own address (`bastion up` prints it).
"""

from __future__ import annotations

from html import escape

__all__ = ["landing_page"]

_STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:42rem;margin:3rem auto;padding:0 1rem;color:#222}"
    "code{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}a{color:#0b5cad}"
    "li{margin:.3rem 0}.dim{color:#666}"
)


def landing_page(base_url: str, version: str) -> str:
    """A small self-contained HTML page: what Bastion is, the MCP URL, where to go next."""
    mcp = escape(f"{base_url}/mcp")
    links = [("/healthz", "Health", "whether this gateway is connected and how many tools it serves")]
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
        "<p class='dim'>The admin API, its reference and the analytics dashboard are served by the admin "
        "service on its own address, apart from this public endpoint (<code>bastion up</code> prints it; "
        "the <code>bastion</code> CLI finds it in the stack file).</p>"
        "</body></html>"
    )
