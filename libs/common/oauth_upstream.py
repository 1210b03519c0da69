"""Contracts of Bastion's OAuth client toward upstream servers (the oauth service's upstream side).

    executor  -> oauth  `UpstreamTokenQuery` -> `UpstreamToken`   on `OAUTH_UPSTREAM_TOKEN`
    admin API -> oauth  `AuthorizeLinkQuery` -> `AuthorizeLink`   on `OAUTH_UPSTREAM_LINK`

The browser side of the authorization step (`/oauth/upstream/authorize`, `/oauth/upstream/callback`)
reaches the oauth service as forwarded HTTP (`OAUTH_HTTP`, `bastion_common.oauth`).

The access token in an `UpstreamToken` travels only to the executor's own inbox (`_INBOX.executor`,
which no other role may read); refresh tokens and client secrets never leave the oauth service.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .config import ServerConfig

__all__ = [
    "AuthorizeLink",
    "AuthorizeLinkQuery",
    "UpstreamToken",
    "UpstreamTokenQuery",
    "oauth_applies",
]

_Text = Annotated[str, Field(max_length=4096)]


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UpstreamTokenQuery(_Contract):
    """executor -> oauth: the access token to send to `server` now."""

    server: Annotated[str, Field(max_length=64)]
    url: _Text
    transport: Literal["http", "sse"]
    per_user: bool = False
    user: Annotated[str | None, Field(max_length=256)] = None
    """The calling user (per-user servers only); never another user's token is answered."""
    rejected: _Text | None = None
    """The token the upstream just answered 401 to: refresh it even if it looks fresh."""


class UpstreamToken(_Contract):
    access_token: _Text | None = None
    expires_at: float | None = None
    needs_auth: bool = False
    """No usable token: someone must complete the authorization step."""
    authorize_url: _Text | None = None
    """Per-user servers: the link the calling user opens to authorize (only ever in their own answer)."""
    error: _Text | None = None


class AuthorizeLinkQuery(_Contract):
    """admin API -> oauth: a fresh link for an admin to authorize a server's shared token."""

    server: Annotated[str, Field(max_length=64)]
    url: _Text
    transport: Literal["http", "sse"]


class AuthorizeLink(_Contract):
    url: _Text | None = None
    error: _Text | None = None


def oauth_applies(config: ServerConfig) -> bool:
    """OAuth is for remote servers whose configuration does not bring its own credentials."""
    return config.transport != "stdio" and not any(k.lower() == "authorization" for k in config.headers)
