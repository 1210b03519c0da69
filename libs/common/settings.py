"""Service settings, read from the environment (prefix `BASTION_`).

One class per service, all here, so ops have a single place to look (docs/configuration.md
mirrors it). `bastion up` sets these for the services it starts; in a deployment they come from
the container environment.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "AuditSettings",
    "ExecutorSettings",
    "IngressSettings",
    "PolicySettings",
    "RequestPathSettings",
    "ServiceSettings",
]


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BASTION_", extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"
    """Comma-separated list of NATS servers."""
    log_level: str = "INFO"
    instance: str = ""
    """Replica name used in logs and liveness subjects (policy and executor default it to the host
    name and pid). Must differ between replicas: a replica answering for a dead one hides the death."""


class RequestPathSettings(ServiceSettings):
    """How the request path notices a replica dying mid-call (`bastion_common.relay`).

    A requester (ingress, policy) learns which replica holds a call from its acknowledgement and
    probes that replica while the call is unanswered; a responder (policy, executor) acknowledges."""

    ack_after: float = Field(default=0.25, gt=0)
    """Responder: seconds a call runs before it is acknowledged; faster calls send no ack."""
    ack_grace: float = Field(default=5.0, gt=0)
    """Requester: seconds a call may stay unacknowledged before it counts as lost on the way."""
    probe_every: float = Field(default=1.0, gt=0)
    """Requester: seconds between liveness probes of a replica holding an unanswered call."""
    probe_timeout: float = Field(default=1.0, gt=0)
    """Requester: seconds one probe waits for its answer."""
    probe_misses: int = Field(default=3, ge=1)
    """Requester: unanswered probes in a row after which the replica counts as gone."""

    @model_validator(mode="after")
    def _ack_before_grace(self) -> Self:
        if self.ack_grace <= self.ack_after:
            raise ValueError("ack_grace must exceed ack_after, or every slow call would count as lost")
        return self


class IngressSettings(RequestPathSettings):
    host: str = "127.0.0.1"
    port: int = 8420
    max_body_bytes: int = 4 * 1024 * 1024
    response_mode: str = Field(default="json", pattern="^(json|sse)$")
    call_timeout: float = 120.0
    session_secret: SecretStr = SecretStr("")
    """HMAC key for session ids; shared by all ingress replicas so any replica serves any session.
    Empty means a random per-process secret (fine for one replica)."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """Host names (and origins' hosts) browsers may reach `/mcp` under. Empty: when bound to a
    loopback address only localhost names are accepted (DNS-rebinding protection); otherwise any."""
    admin_token: SecretStr = SecretStr("")
    """Bearer credential of the admin REST API (`/admin/v1`); empty disables the admin API (503)."""


class PolicySettings(RequestPathSettings):
    redis_url: str = "redis://127.0.0.1:6379/0"


class ExecutorSettings(RequestPathSettings):
    connect_timeout: float = 30.0
    """Seconds to wait for an upstream to accept a session before marking it unavailable."""
    reconnect_max_backoff: float = 30.0
    health_interval: float = 15.0
    """Seconds a connected upstream may stay idle before the executor pings it; a failed ping
    reconnects the session."""


class AuditSettings(ServiceSettings):
    clickhouse_url: str = "chdb:///tmp/bastion-clickhouse"
    """A `chdb:///abs/path` DSN (embedded engine) or an `http(s)://user:pass@host:8123/db` URL."""
    batch_size: int = 1000
    """Messages (each an event or a batch of events) per ClickHouse insert, at most."""
    flush_interval: float = 1.0
    """Seconds an event may wait for its batch to fill before it is written anyway."""
