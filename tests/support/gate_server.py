"""A stdio MCP server whose `hold(name)` marks that it was called, then answers only once told to.

It writes `$GATE_DIR/<name>.called` as it starts and returns after `$GATE_DIR/<name>.open` exists:
a test knows a call reached the upstream without asking the gateway, and decides when it ends.
`$GATE_DIR/<name>.ended` says the call is over upstream, answered or cancelled."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer

GATES = Path(os.environ.get("GATE_DIR", "gates"))

mcp = MCPServer("gate")


@mcp.tool()
async def hold(name: str) -> str:
    """Say that `name` was called, then wait until its gate is opened; say when the call ended,
    answered or cancelled."""
    (GATES / f"{name}.called").touch()
    try:
        # the signal is a file another process writes: nothing in this process could set an Event
        while not (GATES / f"{name}.open").exists():  # noqa: ASYNC110
            await anyio.sleep(0.05)
        return f"passed {name}"
    finally:
        (GATES / f"{name}.ended").touch()


if __name__ == "__main__":
    mcp.run("stdio")
