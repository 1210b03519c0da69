"""Contracts of the oauth service: HTTP carried over NATS, and what it publishes for ingress.

Ingress owns every HTTP listener. The OAuth routes (`/oauth/...`, `/.well-known/oauth-...`) are
forwarded as one `HttpExchangeRequest` on `subjects.OAUTH_HTTP`; the oauth service answers an
`HttpExchangeResponse` that ingress writes back as is. Access tokens are verified by ingress itself
from `AccessTokenKeys` (KV `subjects.KV_OAUTH_PUBLIC`) and `RevokedToken` entries
(KV `subjects.KV_OAUTH_REVOKED`), so the hot path never waits on the oauth service.
"""

from __future__ import annotations

import time
from typing import Any, Final

from pydantic import Field

from libs.common.contracts.messages_base import BusMessage

__all__ = [
    "ACCESS_TOKEN_TYP",
    "JWKS_KEY",
    "MAX_HTTP_BODY",
    "OAUTH_PATH_PREFIXES",
    "REGISTRATION_TTL",
    "REVOCATION_TTL",
    "USER_CALLER_PREFIX",
    "AccessTokenKeys",
    "HttpExchangeRequest",
    "HttpExchangeResponse",
    "PasswordChange",
    "PasswordChanged",
    "RevokedToken",
]

MAX_HTTP_BODY: Final = 64 * 1024
"""Bytes of an OAuth request body ingress forwards at most (forms and registration documents are small)."""

OAUTH_PATH_PREFIXES: Final = (
    "/oauth/",
    "/.well-known/oauth-protected-resource",
    "/.well-known/oauth-authorization-server",
)
"""Paths ingress forwards to the oauth service."""

JWKS_KEY: Final = "jwks"
"""Key of `AccessTokenKeys` in `subjects.KV_OAUTH_PUBLIC`."""

ACCESS_TOKEN_TYP: Final = "at+jwt"
"""JWT `typ` header of Bastion access tokens (RFC 9068), so no other JWT passes for one."""

REGISTRATION_TTL: Final = 24 * 3600.0
"""Seconds an anonymous client registration is kept before its first token (KV
`subjects.KV_OAUTH_REGISTRATIONS`): clients register and log in within minutes, so one unused for a
day was abandoned or never meant to be used."""

REVOCATION_TTL: Final = 24 * 3600.0
"""Seconds a revocation entry lives: longer than any access token (`OAuthSettings.access_token_ttl`
is capped below it), so a revoked token has expired before its entry goes."""

USER_CALLER_PREFIX: Final = "user:"
"""`Caller.key_id` of a request authenticated with an OAuth access token: `user:<user id>`. Policy
resolves it to the user (and their team, customer and groups) the way it resolves a key."""


class HttpExchangeRequest(BusMessage):
    method: str
    path: str
    query: str = ""
    """The raw query string (no leading `?`)."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Lower-case names; only what OAuth needs (content-type, authorization, cookie, accept)."""
    body: str = ""
    """The body decoded as UTF-8 (forms and JSON); at most `MAX_HTTP_BODY` bytes."""
    client_address: str = ""
    """The address the HTTP request came from (as ingress's server saw it), for per-address limits."""
    base_url: str
    """Public base URL of this gateway as configured on ingress (`BASTION_PUBLIC_URL`), never taken
    from the Host header: issuer, resource and redirect targets are built from it."""


class HttpExchangeResponse(BusMessage):
    status: int
    headers: list[tuple[str, str]] = Field(default_factory=list)
    body: str = ""


class AccessTokenKeys(BusMessage):
    """The public JWK set access tokens are signed with (current key first; old ones until they expire)."""

    keys: list[dict[str, Any]]
    updated_at: float = Field(default_factory=time.time)


class RevokedToken(BusMessage):
    jti: str
    expires_at: float
    """When the token would have expired anyway; ingress forgets the entry after that."""


class PasswordChange(BusMessage):
    """admin -> oauth (`subjects.OAUTH_PASSWORD`): set the built-in store's password of an existing user."""

    user_id: str
    password: str = Field(repr=False, max_length=1024)
    """Plain text on the wire (the bus is private and per-role), hashed by the oauth service; kept out of reprs."""


class PasswordChanged(BusMessage):
    ok: bool
    error: str | None = None
