"""Upstream servers by kind, side by side.

One interface (`interface`), one implementation per kind chosen by `registry.KINDS`: `mcp/` (stdio,
streamable HTTP and SSE share `mcp.mcp_session` and the wire code under it) and `openapi/` (REST APIs
served from their OpenAPI documents). What every kind shares sits here: reconnecting with backoff
(`reconnect`), what a server last said about itself (`last_words`), where its connections may go
(`egress_guard`)."""
