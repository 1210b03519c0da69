"""HTTP around the MCP endpoint.

Limits enforced below the ASGI app (`http_limits`), single-valued headers (`http_headers`), the host
names served (`hosts`), head and body in one write (`response_writes`), closed connections
(`lost_connections`), and the plain HTTP routes: the landing page (`pages`) and the gateway as an MCP
Registry (`registry_out`).

Below: sending, catalog, auth. Above: mcp_edge and `service`, which mount them.
"""
