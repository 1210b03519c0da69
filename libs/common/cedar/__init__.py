"""Cedar: the policy engine's shared parts.

Compiling and evaluating Cedar policies, the policy store in NATS KV and the approvals store.
Below: contracts, settings, runtime and bus. Beside it: audit, supply_chain, analytics and web.
"""
