"""A stdio MCP server that misbehaves on request, for the executor's fault tests.

It writes non-JSON lines on stdout (at startup and from `noisy`), talks on stderr, and has tools
that hang: `hang` counts the cancellations it receives (`cancelled` reports them), `hang_once` /
`hang_once_unsafe` hang only until a `<key>.done` file exists in $FAULTY_DIR and mark their
start with `<key>.started`, so a test knows a call is in flight before it kills the process.

With `--sse` it serves HTTP+SSE on a free port instead (`READY <url>` on stdout), and answers HTTP
500 to any POST whose body holds `refuse-this-post`: what a proxy or an overloaded server may do to
one request of a session whose event stream stays open.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

SAFE = ToolAnnotations(read_only_hint=True, idempotent_hint=True)
STATE = Path(os.environ.get("FAULTY_DIR", "."))

mcp = MCPServer("faulty")
cancellations = 0


def garbage(text: str) -> None:
    os.write(1, f"{text}\n".encode())  # one write: never interleaved inside a JSON-RPC line


@mcp.tool(annotations=SAFE)
def echo(text: str) -> str:
    return text


@mcp.tool(annotations=SAFE)
def noisy(text: str) -> str:
    """Print garbage on stdout before answering."""
    garbage(f"garbage before the answer to {text}")
    return text


@mcp.tool(annotations=SAFE)
async def hang() -> str:
    global cancellations
    try:
        await anyio.sleep(3600)
    except anyio.get_cancelled_exc_class():
        cancellations += 1
        raise
    return "never"


@mcp.tool(annotations=SAFE)
def cancelled() -> int:
    return cancellations


async def _hang_until_done(key: str) -> str:
    if (STATE / f"{key}.done").exists():
        return f"done {key}"
    (STATE / f"{key}.started").write_text(str(os.getpid()))
    await anyio.sleep(3600)
    return "never"


@mcp.tool(annotations=SAFE)
async def hang_once(key: str) -> str:
    """Safe to repeat: hangs the first time, answers once `<key>.done` exists."""
    return await _hang_until_done(key)


@mcp.tool()
async def hang_once_unsafe(key: str) -> str:
    """Same, but not annotated: the executor must never send it twice."""
    (STATE / f"{key}.attempts").open("a").write("x")
    return await _hang_until_done(key)


@mcp.tool(annotations=SAFE)
def pid() -> int:
    return os.getpid()


REFUSED = b"refuse-this-post"


def refusing_posts(app: Any) -> Any:
    """`app`, except that a POST whose body holds `REFUSED` gets HTTP 500 and never reaches it."""

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        if REFUSED in body:
            await send({"type": "http.response.start", "status": 500, "headers": []})
            return await send({"type": "http.response.body", "body": b"refused"})
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await app(scope, replay, send)

    return guarded


def serve_sse() -> None:
    from asgi_serve import bind, serve_ready  # beside this script

    sock, base = bind("127.0.0.1", 0)
    anyio.run(serve_ready, refusing_posts(mcp.sse_app()), sock, base + "/sse")


if __name__ == "__main__":
    if "--sse" in sys.argv:
        serve_sse()
    else:
        print(f"faulty server {os.getpid()} starting", file=sys.stderr, flush=True)
        garbage("this line is not JSON-RPC")
        mcp.run("stdio")
