"""The oauth service's metrics.

Tokens issued to agents and refused, sign-ins at the login page, and upstream tokens fetched for
executors. Served with the shared ones (`libs.common.runtime.metrics`) on its `/metrics`.
"""

from __future__ import annotations

from prometheus_client import Counter

__all__ = ["OAUTH_LOGINS", "OAUTH_TOKENS_ISSUED", "OAUTH_TOKEN_REFUSALS", "OAUTH_UPSTREAM_TOKENS"]

OAUTH_TOKENS_ISSUED = Counter(
    "bastion_oauth_tokens_issued", "Access tokens the oauth service issued to agents, by grant type.", ["grant"]
)
OAUTH_TOKEN_REFUSALS = Counter(
    "bastion_oauth_token_refusals",
    "Token endpoint requests the oauth service refused, by OAuth error code (invalid_grant, invalid_client, ...).",
    ["reason"],
)
OAUTH_LOGINS = Counter(
    "bastion_oauth_logins",
    "Sign-ins at Bastion's login page, by method (password, federated) and outcome (ok, refused, locked, expired).",
    ["method", "outcome"],
)
OAUTH_UPSTREAM_TOKENS = Counter(
    "bastion_oauth_upstream_token_fetches",
    "Upstream access tokens asked for by executors, by outcome (kept, refreshed, exchanged, needs_auth, "
    "refresh_failed, refused, error).",
    ["outcome"],
)
