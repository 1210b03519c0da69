"""The policy service's settings."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from libs.common.contracts.egress import EgressSection
from libs.common.settings.base import RequestPathSettings

__all__ = ["PolicySettings"]


class PolicySettings(RequestPathSettings):
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    """May carry credentials (`redis://policy:<password>@host:port/0`), hence never shown."""
    bus_signing_key: SecretStr = SecretStr("")
    """HMAC key signing the work policy sends executors (`libs.common.bus.work_signing`); the same value
    on every policy and executor replica. Empty: unsigned (only for an open test bus)."""
    grant_ttl: float = Field(default=5.0, ge=0.0, le=300.0)
    """Seconds ingress may reuse policy's decision to allow a caller a tool when nothing about the
    call is counted (no budget, no rate limit applies): its next calls of that tool go straight to
    an executor with policy's signed grant (`messages.Grant`), one hop and one policy decision fewer.
    Ingress drops grants as soon as it sees keys or policy change, and executors hold them stale
    once they apply a servers change (prices, tool rate limits); this bounds how long a grant
    outlives a change neither has seen. 0: policy decides every call."""
    secrets_key: SecretStr = SecretStr("")
    """Fernet key(s) sealing the calls parked for approval, and their outcomes, in KV
    (`libs.common.runtime.sealing`): the same value as the admin service's, which opens them for approvers."""
    approval_ttl: float = Field(default=3600.0, ge=10.0, le=30 * 24 * 3600.0)
    """Seconds a call parked for approval waits for a person (and, once approved, for the agent to
    call again) before it expires unrun (docs/approvals.md)."""
    approval_webhook_url: str = Field(default="", pattern=r"^(https?://\S+)?$")
    """POSTed a JSON notice (no arguments) each time a call is parked, for a chat tool; empty: none.
    Its host is reached under the upstreams' egress rules (`egress`), and the service's OS box opens
    its port (`libs.common.runtime.walls.boxes`)."""
    approval_webhook_secret: SecretStr = SecretStr("")
    """HMAC-SHA256 key signing each webhook body (`X-Bastion-Signature: sha256=<hex>`)."""
    egress: EgressSection = Field(default_factory=EgressSection)
    """`BASTION_EGRESS` (the config file's `egress` section, as the executor gets it): the webhook's
    host may be a non-public address only when listed in `allow_private_hosts`, as for upstreams."""

    @field_validator("egress", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return {} if isinstance(value, str) and not value.strip() else value
