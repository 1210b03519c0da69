"""`echo`: a tiny MCP server for trying Bastion out, and for its tests and benchmarks.

    python examples/servers/echo_server.py                 # stdio
    python examples/servers/echo_server.py --http --port 0 # streamable HTTP at /mcp
    python examples/servers/echo_server.py --sse --port 0  # HTTP+SSE at /sse

Tools: `echo`, `add`, `sleep` (to exercise timeouts), `fail` (an `isError` result) and `stats`
(process id and number of client handshakes, to check that a client reuses its session).
Resource: `echo://about` (what this server is). Prompt: `repeat` (asks the model to repeat a text).
"""

from __future__ import annotations

import os

import anyio
from _runner import HandshakeCounter, parse_args, run
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)

handshakes = HandshakeCounter()
mcp = MCPServer(
    "echo", version="1.0.0", instructions="Echoes and small arithmetic, for testing.", middleware=[handshakes]
)


@mcp.tool(annotations=READ_ONLY)
def echo(text: str) -> str:
    """Return `text` unchanged."""
    return text


@mcp.tool(annotations=READ_ONLY)
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@mcp.tool(annotations=READ_ONLY)
async def sleep(seconds: float) -> str:
    """Wait `seconds` seconds, then say so."""
    await anyio.sleep(seconds)
    return f"slept {seconds}s"


@mcp.tool(annotations=READ_ONLY)
def fail(message: str) -> str:
    """Always fail with `message` (the result has isError: true)."""
    raise ToolError(message)


@mcp.tool(annotations=READ_ONLY)
def stats() -> dict[str, int]:
    """This server's process id and how many client sessions it has accepted."""
    return {"pid": os.getpid(), "handshakes": handshakes.count}


@mcp.resource("echo://about", mime_type="text/plain", description="What this server is")
def about() -> str:
    return "echo: an example MCP server shipped with Bastion (tools echo, add, sleep, fail, stats)."


@mcp.prompt()
def repeat(text: str) -> str:
    """Ask the model to repeat `text` using the echo tool."""
    return f"Call the echo tool with the text {text!r} and tell me what it answered."


if __name__ == "__main__":
    run(mcp, parse_args(__doc__ or ""))
