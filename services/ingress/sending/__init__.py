"""The send path: a request routed to one upstream, from the handler to policy or straight to an
executor and back.

`routed_sender` opens the agent's call stream and keeps what cancellation needs; `request_path`
runs the send loop (route, send, wait, retry on a stale grant or a rejoining replica) over NATS;
`grant_cache` holds policy's reusable decisions; `down_servers` says which servers an executor
reports unavailable; `metrics` counts how each request was routed.
"""
