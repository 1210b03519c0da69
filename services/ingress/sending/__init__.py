"""The send path: a request routed to one upstream, from a handler to policy or straight to an executor, and back.

`routed_sender` opens the agent's call stream and keeps what cancellation needs; `request_path`
runs the send loop (encode, route, send, wait, retry on a stale grant or a rejoining replica,
read) over NATS; `grant_cache` holds policy's reusable decisions; `down_servers` says which
servers an executor reports unavailable. How each request was routed: `services.ingress.metrics`.

Below: sessions (call streams), catalog, context, protocol. Above: the handlers, tasks, web's
registry routes, mcp_edge's streams and `/v1`.
"""
