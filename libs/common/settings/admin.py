"""The admin service's settings."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from libs.common.contracts.egress import EgressSection
from libs.common.settings.base import AuditJournalSettings, RefusalSettings, ServiceSettings

__all__ = ["AdminSettings"]


class AdminSettings(ServiceSettings, AuditJournalSettings, RefusalSettings):
    """The admin service.

    The admin REST API (`/admin/v1`), analytics and the dashboard, on a port of its own
    (docs/admin-api.md). The only holder of the admin NATS role among the services."""

    admin_host: str = "127.0.0.1"
    """Address the admin service binds to. Keep it off the public network: put it behind your VPN or
    an authenticating proxy, apart from ingress."""
    admin_port: int = Field(default=8421, ge=0, le=65535)
    """Port of the admin API, the dashboard and `/docs` (0: a free one, logged)."""
    admin_public_url: str = Field(default="", pattern=r"^(https?://[^/?#\s]+)?$")
    """Scheme and authority people reach the admin service under (`https://admin.example.com`): the
    browser sign-in's redirect URI. Empty: `http://<admin host>:<admin port>`."""
    public_url: str = Field(default="", pattern=r"^(https?://[^/?#\s]+)?$")
    """The gateway's public URL, as on ingress and oauth (`BASTION_PUBLIC_URL`): where a person signs in
    (the oauth service's form, or the OpenID provider behind it), and where the console's playground
    calls `<public_url>/mcp` as a key. Empty: browser sign-in and the playground are off (API tokens only)."""
    admin_bootstrap_token: SecretStr = SecretStr("")
    """Creates the first owner (`POST /admin/v1/principals`, nothing else) and stops working once an
    owner exists. Empty: off (`bastion up` makes its owner itself)."""
    admin_session_ttl: float = Field(default=8 * 3600.0, ge=60, le=7 * 24 * 3600.0)
    """Seconds a browser session lasts after signing in."""
    admin_token_days: int = Field(default=90, ge=1, le=366)
    """Lifetime in days of an API token whose request names none (at most 366: every token expires)."""
    secrets_key: SecretStr = SecretStr("")
    """Fernet key(s) sealing the upstream secrets the admin API writes (`libs.common.runtime.sealing`)."""
    registries: dict[str, str] = Field(default_factory=lambda: {"official": "https://registry.modelcontextprotocol.io"})
    """MCP Registries servers may be imported from (`BASTION_REGISTRIES`, JSON: name -> base URL;
    the configuration file's `registries`), docs/registry.md."""
    registry_timeout: float = Field(default=10.0, gt=0, le=120)
    """Seconds a request to a registry may take."""
    egress: EgressSection = Field(default_factory=EgressSection)
    """`BASTION_EGRESS` (JSON, the config file's `egress` section: `bastion up` sets it, as for the
    executors): the non-public hosts the console's test of a server before it is saved may reach, beside
    the server's own `allow_private_hosts`. Unset: public addresses only."""

    @field_validator("egress", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return {} if isinstance(value, str) and not value.strip() else value
