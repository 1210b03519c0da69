"""A stdio MCP server whose `meet(group, size)` returns only once `size` calls of the same group
are in flight together (or says it gave up after 10 s): proof of concurrency without timing."""

from __future__ import annotations

import anyio
from mcp.server.mcpserver import MCPServer

mcp = MCPServer("rendezvous")
_arrived: dict[str, int] = {}
_complete: dict[str, anyio.Event] = {}


@mcp.tool()
async def meet(group: str, size: int) -> str:
    """Wait until `size` callers of `group` are here at the same time."""
    event = _complete.setdefault(group, anyio.Event())
    _arrived[group] = _arrived.get(group, 0) + 1
    if _arrived[group] >= size:
        event.set()
    with anyio.move_on_after(10):
        await event.wait()
    return "met" if event.is_set() else "alone"


if __name__ == "__main__":
    mcp.run("stdio")
