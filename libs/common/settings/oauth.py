"""The oauth service's settings."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from libs.common.settings.base import ServiceSettings

__all__ = ["OAuthSettings"]

_ALLOW_ENTRY = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62}\.)*[A-Za-z0-9-]{1,63}\.?$")
"""A host name, or `*.` and a domain, as the oauth service's SSRF allow-lists take them."""


class OAuthSettings(ServiceSettings):
    """The oauth service.

    Bastion's authorization server toward agents and its client toward upstreams (docs/oauth.md)."""

    access_token_ttl: int = Field(default=600, ge=30, le=3600)
    """Seconds an access token (a JWT ingress verifies locally) is valid; short, since a revoked
    token is refused by ingress only through the revocation list."""
    refresh_token_ttl: int = Field(default=30 * 24 * 3600, ge=60)
    """Seconds a refresh token family lives after its last use."""
    code_ttl: int = Field(default=60, ge=5, le=600)
    """Seconds an authorization code may wait to be exchanged."""
    login_ttl: int = Field(default=600, ge=30, le=3600)
    """Seconds a user has to complete the login form."""
    registrations_per_address: int = Field(default=10, ge=1, le=100_000)
    """Anonymous client registrations (`POST /oauth/register`) one address may make per hour."""
    registrations_per_hour: int = Field(default=1000, ge=1, le=1_000_000)
    """Anonymous client registrations the whole gateway accepts per hour, from all addresses together:
    with the per-registration size cap this bounds what strangers can store (unused ones expire after a
    day). Clients with a metadata document (a URL as client_id) or pre-registered ones don't count."""
    login_max_failures: int = Field(default=10, ge=1, le=1000)
    """Wrong passwords for one user name within `login_failure_window` before its sign-ins are refused."""
    login_failure_window: int = Field(default=900, ge=10, le=86400)
    """Seconds the failures of a user name are counted over (and its sign-ins refused after too many)."""
    secrets_key: SecretStr = SecretStr("")
    """Fernet key(s), newest first, sealing the access token signing key in KV (`libs.common.runtime.sealing`),
    every upstream OAuth record (tokens, client secrets) in the `kv` secret store, and authorization links."""
    public_url: str = Field(default="http://127.0.0.1:8420", pattern=r"^https?://[^/?#\s]+$")
    """The gateway's public base URL, as on ingress (`BASTION_PUBLIC_URL`): authorization links and
    the redirect URIs registered at upstream authorization servers and the OpenID provider."""
    upstream_secret_store: Literal["kv", "vault"] = "kv"
    """Where upstream OAuth tokens and client secrets live: `kv` (JetStream KV, sealed with
    `BASTION_SECRETS_KEY`) or `vault` (HashiCorp Vault KV v2, `BASTION_VAULT_*`)."""
    vault_url: str = ""
    vault_token: SecretStr = SecretStr("")
    vault_mount: str = "secret"
    """Mount point of Vault's KV v2 engine."""
    vault_prefix: str = "bastion/oauth"
    """Path under the mount where Bastion keeps upstream OAuth records."""
    upstream_link_ttl: int = Field(default=600, ge=30, le=86400)
    """Seconds an authorization link (`bastion servers list`, a per-user error) stays valid."""
    upstream_refresh_margin: float = Field(default=60.0, ge=0, le=3600)
    """An upstream access token this close to its expiry is refreshed before it is handed out."""
    upstream_oauth_allow_private: bool = False
    """Let the upstream side reach hosts that resolve to loopback, private, link-local, multicast or
    reserved addresses (the upstream's 401 probe, its metadata, registration and token endpoints). Off:
    refused after DNS resolution, so an upstream's metadata cannot point Bastion into its own network
    (SSRF). For tests and development, or upstreams and authorization servers on an internal network."""
    upstream_oauth_allow_hosts: list[str] = Field(default_factory=list)
    """Internal hosts the upstream side may reach although they resolve to such addresses, the others
    still refused: host names (`auth.corp.example`), `*.corp.example` (any name below it), addresses and
    CIDR blocks (`10.20.0.0/16`). A JSON list (`BASTION_UPSTREAM_OAUTH_ALLOW_HOSTS='["mcp.corp.example"]'`)."""
    oauth_clients_file: str = ""
    """Pre-registered clients: a YAML list of `client_id`, `redirect_uris`, and for confidential ones
    `token_endpoint_auth_method` with `client_secret_sha256` (docs/oauth.md)."""
    client_metadata_allow_http_loopback: bool = False
    """Accept `http://127.0.0.1/...`-style client ID metadata document URLs (development only; https otherwise)."""
    client_metadata_allow_private: bool = False
    """Fetch client ID metadata documents from hosts that resolve to loopback, private, link-local,
    multicast or reserved addresses. Off: such a fetch is refused after DNS resolution, so a stranger's
    `client_id` cannot make Bastion call into its own network (SSRF). For tests and development."""
    client_metadata_allow_hosts: list[str] = Field(default_factory=list)
    """Internal hosts client ID metadata documents may come from although they resolve to such
    addresses, the others still refused (entries as for `upstream_oauth_allow_hosts`)."""

    oidc_issuer: str = Field(default="", pattern=r"^(https?://[^?#\s]+)?$")
    """OIDC federation: the external OpenID provider's issuer URL; empty: the password form only."""
    oidc_name: str = Field(default="", max_length=64)
    """How the login form names the provider ("Sign in with <name>"); empty: its issuer URL."""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")
    """Bastion's client at the provider; its redirect URI is `<public_url>/oauth/federated/callback`."""
    oidc_scope: str = "openid profile email"
    oidc_user_claim: str = "preferred_username"
    """The ID token claim naming the Bastion user (which must exist); e.g. `email` or `sub`."""

    @field_validator("upstream_oauth_allow_hosts", "client_metadata_allow_hosts")
    @classmethod
    def _allow_list(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            if not _ALLOW_ENTRY.match(entry):
                try:
                    ipaddress.ip_network(entry.strip("[]"), strict=False)
                except ValueError:
                    raise ValueError(
                        f"{entry!r} is not a host name, a *.domain pattern, an address or a CIDR block"
                    ) from None
        return entries
