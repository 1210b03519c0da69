"""What can go wrong talking to an upstream's authorization server.

UpstreamOAuthError          any failure; the message is safe to show (no token, no secret)
├── DiscoveryError          the server's 401 and metadata do not lead to a usable authorization server
├── AuthorizationServerError the authorization server refused a request (carries its RFC 6749 `error`)
└── NotAuthorized           no usable token: someone must complete the authorization step
"""

from __future__ import annotations

__all__ = ["AuthorizationServerError", "DiscoveryError", "NotAuthorized", "UpstreamOAuthError"]


class UpstreamOAuthError(Exception):
    """Base of every upstream OAuth failure."""


class DiscoveryError(UpstreamOAuthError):
    pass


class AuthorizationServerError(UpstreamOAuthError):
    def __init__(self, error: str, description: str | None = None) -> None:
        self.error = error
        super().__init__(f"authorization server refused: {error}" + (f" ({description})" if description else ""))


class NotAuthorized(UpstreamOAuthError):
    pass
