"""Contracts of Bastion's OAuth client toward upstream servers (the oauth service's upstream side).

    executor  -> oauth  `UpstreamTokenQuery` -> `UpstreamToken`   on `OAUTH_UPSTREAM_TOKEN`
    admin API -> oauth  `AuthorizeLinkQuery` -> `AuthorizeLink`   on `OAUTH_UPSTREAM_LINK`

The browser side of the authorization step (`/oauth/upstream/authorize`, `/oauth/upstream/callback`)
reaches the oauth service as forwarded HTTP (`OAUTH_HTTP`, `libs.common.contracts.oauth`).

The access token in an `UpstreamToken` travels only to the executor's own inbox (`_INBOX.executor`,
which no other role may read); refresh tokens and client secrets never leave the oauth service.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from libs.common.contracts.config import ServerConfig

__all__ = [
    "AUTHORIZE_URL",
    "AuthorizeLink",
    "AuthorizeLinkQuery",
    "UpstreamProbe",
    "UpstreamToken",
    "UpstreamTokenQuery",
    "authorize_url_of",
    "for_the_agent",
    "oauth_applies",
    "oauth_target",
    "with_authorize_url",
]

UpstreamProbe = Literal["http", "sse", "rest"]
"""How a server is probed for its 401 challenge: an MCP POST (streamable HTTP), an SSE GET, or a
plain GET of a REST API's resource (an OpenAPI server: its resources need not accept POST)."""

AUTHORIZE_URL: Final = "authorize_url"
"""Key of a refusal's `GatewayError.data` holding the calling user's authorization link (a per-user
server they have not authorized yet). The link carries a ticket that binds an upstream account to
that user for `BASTION_UPSTREAM_LINK_TTL`: a credential. So it never goes into the error's message,
which audit rows and logs keep; only the answer to the agent adds it (`for_the_agent`)."""

_Text = Annotated[str, Field(max_length=4096)]


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UpstreamTokenQuery(_Contract):
    """executor -> oauth: the access token to send to `server` now."""

    server: Annotated[str, Field(max_length=64)]
    url: _Text
    transport: UpstreamProbe
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
    transport: UpstreamProbe


class AuthorizeLink(_Contract):
    url: _Text | None = None
    error: _Text | None = None


def authorize_url_of(data: Any) -> str | None:
    """The authorization link a refusal's `data` carries, if any."""
    url = data.get(AUTHORIZE_URL) if isinstance(data, dict) else None
    return url if isinstance(url, str) and url else None


def for_the_agent(message: str, data: Any) -> str:
    """The error text the agent reads.

    `message`, and the authorization link when `data` holds one (clients and models often show only the
    message, not `data`)."""
    url = authorize_url_of(data)
    return f"{message}; open {url}" if url else message


def with_authorize_url(data: Any, url: str) -> dict[str, Any]:
    """A refusal's `data` with the user's authorization link added (kept: what was there already)."""
    return {**(data if isinstance(data, dict) else {}), AUTHORIZE_URL: url}


def oauth_applies(config: ServerConfig) -> bool:
    """OAuth is for remote servers whose configuration does not bring its own credentials.

    (An OpenAPI server: one whose `openapi.auth` asks for it)."""
    if config.openapi is not None:
        return config.openapi.oauth_resource is not None
    return config.transport != "stdio" and not any(k.lower() == "authorization" for k in config.headers)


def oauth_target(config: ServerConfig) -> tuple[str, UpstreamProbe] | None:
    """The URL Bastion's upstream OAuth probes and asks tokens for, and how (its transport), or None."""
    if not oauth_applies(config):
        return None
    if config.openapi is not None:
        resource = config.openapi.oauth_resource
        return (resource, "rest") if resource is not None else None
    if config.url is None:
        return None
    return config.url, "sse" if config.transport == "sse" else "http"
