"""Supply chain: what a tool definition is pinned to and how pins travel.

The signed catalog manifest, the diff of two definitions and the pin store in NATS KV (the pin
records themselves are data, in `contracts.pins`).
Below: contracts, settings, runtime and bus. Beside it: audit, analytics, cedar and web.
"""
