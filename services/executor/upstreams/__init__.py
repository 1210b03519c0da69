"""Upstream servers by kind: one interface (`interface`), one implementation per kind chosen by
`registry.KINDS` (stdio, streamable HTTP and SSE share `mcp_session`)."""
