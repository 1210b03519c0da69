"""Agent sessions and the streams to them.

Signed session ids (`session_ids`), what a session asked for that outlives a request (`session_state`, in
KV), the call streams an upstream writes to while a call runs (`streams`) and the standalone streams of
server-initiated messages (`notifications`).

Below: catalog, protocol. Above: context, sending and everything that answers an agent.
"""
