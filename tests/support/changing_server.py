"""A stdio MCP server whose tool list changes at runtime: `grow(name)` registers a new tool and
announces it (on `subscriptions/listen` for 2026-07-28 clients, `notifications/tools/list_changed`
for earlier ones). Used to test that the executor re-lists and republishes its catalog."""

from __future__ import annotations

from mcp.server.mcpserver import Context, MCPServer
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

mcp = MCPServer("changing")


@mcp.tool()
async def grow(name: str, ctx: Context) -> str:
    """Add a tool called `name` that returns its own name."""

    def added() -> str:
        return name

    mcp.add_tool(added, name=name, description=f"added at runtime: {name}")
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        await ctx.notify_tools_changed()
    else:
        await ctx.session.send_tool_list_changed()
    return f"added {name}"


if __name__ == "__main__":
    mcp.run("stdio")
