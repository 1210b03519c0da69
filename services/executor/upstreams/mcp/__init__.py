"""MCP servers, over stdio, streamable HTTP and HTTP+SSE.

One session implementation (`mcp_session`, on the official SDK: `mcp_calls`, `mcp_listing`,
`mcp_changes`), a kind per transport (`stdio`, `streamable_http`, `sse`), and the wire code beneath them:
the lean `tools/call` send (`lean`, `lean_stdio`) on an llhttp connection (`http1`) or the child's pipe
(`stdio_pipe`), bounded HTTP reads (`bounded_http`, `http_client`), a stdio child's box (`stdio_sandbox`)
and stderr (`stderr`), and the `input_required` bridge for handshake-era agents (`input_required`)."""
