"""The upstream MCP server of the protocol-bridging tests, written against the OLD `mcp` 1.x SDK (FastMCP).

Run it with the python of a pinned legacy venv (`tests/support/legacy_sdk.py`): the point is that
the server speaks exactly what that old release spoke. Run with the repo's own python (mcp 2.x,
where FastMCP became `MCPServer`) it is the 2026-07-28 upstream, so every upstream of the matrix
offers the very same tools, prompt and resources.

    <venv>/bin/python tests/support/legacy_server.py                  # stdio
    <venv>/bin/python tests/support/legacy_server.py --sse --port 0   # HTTP+SSE at /sse
    <venv>/bin/python tests/support/legacy_server.py --http --port 0  # streamable HTTP at /mcp (mcp >= 1.8)

HTTP servers print one `READY <url>` line once the socket accepts connections (`asgi_serve`, like
every test server). The code sticks to the API that every release from 1.8 to 2.3
shares.
"""

from __future__ import annotations

import argparse
import sys

import anyio

try:
    from mcp.server.fastmcp import FastMCP
    from mcp.server.fastmcp.exceptions import ToolError
except ImportError:  # mcp 2.x
    from mcp.server.mcpserver import MCPServer as FastMCP
    from mcp.server.mcpserver.exceptions import ToolError

from asgi_serve import bind, serve_ready  # beside this script: a stdio server's box reads only its folder

mcp = FastMCP("legacy")


@mcp.tool()
def echo(text: str) -> str:
    """Return `text` unchanged."""
    return text


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@mcp.tool()
def fail(message: str) -> str:
    """Always fail with `message` (the result has isError: true)."""
    raise ToolError(message)


# Every upstream offers the same prompt under its own namespaced name, so the matrix checks
# prompts/get per upstream; resources keep their URIs (the same on every upstream here).
@mcp.prompt()
def greet(name: str) -> str:
    """A one-line greeting for `name`."""
    return f"Hello, {name}!"


@mcp.resource("legacy://readme", mime_type="text/plain")
def readme() -> str:
    """A static resource."""
    return "legacy readme"


@mcp.resource("legacy://items/{item_id}", mime_type="text/plain")
def item(item_id: str) -> str:
    """A resource template."""
    return f"item {item_id}"


async def _serve_http(host: str, port: int, sse: bool) -> None:
    app, path = (mcp.sse_app(), "/sse") if sse else (mcp.streamable_http_app(), "/mcp")
    sock, base = bind(host, port)
    await serve_ready(app, sock, base + path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--http", action="store_true")
    mode.add_argument("--sse", action="store_true")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        if args.http or args.sse:
            anyio.run(_serve_http, args.host, args.port, args.sse)
        else:
            mcp.run("stdio")
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
