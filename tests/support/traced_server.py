"""A stdio MCP server that reports the W3C trace context its caller sent in the request's `_meta`.

`traceparent` answers with the `_meta.traceparent` of the `tools/call` that reached it (empty when
none came), so a test sees whether the gateway's trace continued into the upstream request.
"""

from __future__ import annotations

from mcp.server.mcpserver import Context, MCPServer

mcp = MCPServer("traced")


@mcp.tool()
def traceparent(ctx: Context) -> str:
    """The `traceparent` in this request's `_meta`, or an empty string."""
    meta = ctx.request_context.meta
    if meta is None:
        return ""
    value = meta.get("traceparent") if isinstance(meta, dict) else getattr(meta, "traceparent", None)
    if value is None and hasattr(meta, "model_extra"):
        value = (meta.model_extra or {}).get("traceparent")
    return str(value or "")


if __name__ == "__main__":
    mcp.run("stdio")
