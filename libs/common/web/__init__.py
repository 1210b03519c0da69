"""Web: HTTP shared by the services that serve or fetch it.

Serving (uvicorn on a bound socket), page security headers, the favicon, and the guarded HTTP client
whose connections follow the egress rules, and those rules at connection time (`egress_rules`:
resolving a name and refusing what it resolves to).
Below: contracts, settings, runtime and bus. Beside it: audit, supply_chain, analytics and cedar.
"""
