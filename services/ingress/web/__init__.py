"""HTTP below and around the routes: limits enforced below the ASGI app (`http_limits`),
single-valued headers (`http_headers`), the host names served (`hosts`), the landing page
(`pages`), head and body in one write (`response_writes`) and closed connections
(`lost_connections`).
"""
