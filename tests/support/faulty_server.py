"""A stdio MCP server that misbehaves on request, for the executor's fault tests.

It writes non-JSON lines on stdout (at startup and from `noisy`), talks on stderr, and has tools
that hang: `hang` counts the cancellations it receives (`cancelled` reports them), `hang_once` /
`hang_once_unsafe` hang only until a `<key>.done` file exists in $FAULTY_DIR and mark their
start with `<key>.started`, so a test knows a call is in flight before it kills the process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

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


if __name__ == "__main__":
    print(f"faulty server {os.getpid()} starting", file=sys.stderr, flush=True)
    garbage("this line is not JSON-RPC")
    mcp.run("stdio")
