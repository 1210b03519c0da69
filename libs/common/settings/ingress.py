"""The ingress service's settings."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator

from libs.common.settings.base import AuditJournalSettings, RefusalSettings, RequestPathSettings, unguarded_bind_problem

__all__ = ["IngressSettings"]


class IngressSettings(RequestPathSettings, AuditJournalSettings, RefusalSettings):
    host: str = "127.0.0.1"
    port: int = 8420
    max_body_bytes: int = 4 * 1024 * 1024
    response_mode: str = Field(default="json", pattern="^(json|sse)$")
    call_timeout: float = 120.0
    task_max_per_caller: int = Field(default=100, ge=1)
    """MCP tasks (docs/tasks.md): live tasks one key may hold at once; one more is refused."""
    task_max_ttl_ms: int = Field(default=86_400_000, ge=1000, le=86_400_000)
    """The longest a task is kept (an agent asking for more gets this); a day at most."""
    task_default_ttl_ms: int = Field(default=3_600_000, ge=1000)
    """The ttl of a task whose agent asked for none."""
    task_max_result_bytes: int = Field(default=512 * 1024, ge=1024, le=768 * 1024)
    """A gateway-hosted task's result at most (kept in one bus message); larger fails the task."""
    task_poll_interval_ms: int = Field(default=500, ge=10)
    """The poll interval the gateway suggests, and how often it polls an upstream task for an agent
    that speaks no tasks."""
    session_secret: SecretStr = SecretStr("")
    """HMAC key for session ids; shared by all ingress replicas so any replica serves any session.
    Empty means a random per-process secret (fine for one replica). `bastion up` derives it from the
    stack's secrets key, so its replicas share it and sessions outlive a restart."""
    reuse_port: bool = False
    """Listen with SO_REUSEPORT: several replicas on one machine share `port`, the kernel spreading
    new connections among them (`bastion up --ingress-replicas`, docs/reliability.md). Any process
    of the same user may then join the port too: on only when replicas share it."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """Host names (and origins' hosts) browsers may reach `/mcp` under. Empty: when bound to a
    loopback address only localhost names are accepted (DNS-rebinding protection); bound to any
    other address, ingress refuses to start unless `allow_any_host` is set."""
    allow_any_host: bool = False
    """Serve any Host and Origin (a proxy in front checks them). Off: fail closed."""
    audit_buffer: int = Field(default=100_000, ge=1)
    """Audit events held in memory until JetStream acked them, e.g. while NATS restarts (minutes of
    traffic); beyond it new events are dropped, each counted and logged."""
    audit_buffer_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
    """Memory those held events may take (their text, roughly): the bound that holds when events are
    large (names and errors are cut to the limits below first)."""
    audit_linger: float = Field(default=0.05, ge=0, le=1.0)
    """Seconds the audit publisher waits for more events to join a batch. Every batch costs about
    five NATS messages (publish, JetStream ack, delivery, pull, ack): 50 ms instead of 5 ms cut the
    bus traffic from ~5.9 to ~4.8 messages per call at c=16 (docs/benchmarks.md); the audit writer
    inserts once a second anyway."""
    audit_max_text_bytes: int = Field(default=1024, ge=64)
    """Longest name or identifier (tool name, key name, trace id, ...) kept in an audit event; a
    longer one is cut and the event lists it in `truncated` with its original size."""
    audit_max_error_bytes: int = Field(default=8192, ge=64)
    """Longest error message kept in an audit event (cut and listed in `truncated` beyond it)."""
    session_max_age: float = Field(default=24 * 3600.0, gt=0, le=7 * 24 * 3600.0)
    """Seconds an `Mcp-Session-Id` stays valid after `initialize`; then the agent initializes again.
    At most 7 days, the lifetime of the session records in KV (a deleted session stays deleted)."""

    # the HTTP edge (services/ingress/web/http_limits.py): what a client may hold before it is served
    max_connections: int = Field(default=1000, ge=1)
    """Open HTTP connections per replica, streams included; more are answered 503 and closed."""
    max_request_line_bytes: int = Field(default=8192, ge=256)
    """Bytes of the request target (path and query); more: 414."""
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    """Bytes of all request header fields together; more: 431."""
    max_headers: int = Field(default=100, ge=8)
    """Request header fields; more: 431."""
    header_timeout: float = Field(default=5.0, gt=0)
    """Seconds a client has to send a request head (slowloris); then 408 and the connection closes."""
    body_timeout: float = Field(default=30.0, gt=0)
    """Seconds a client has to send a request body once its head is in; then the connection closes."""
    idle_timeout: float = Field(default=30.0, gt=0)
    """Seconds an idle kept-alive connection stays open between requests."""

    # JSON-RPC fields (services/ingress/field_limits.py): refused with an error naming field, size, limit
    max_method_chars: int = Field(default=128, ge=16)
    max_id_chars: int = Field(default=256, ge=16)
    """Characters of a string JSON-RPC id (an integer id must fit in 64 bits)."""
    max_name_chars: int = Field(default=256, ge=64)
    """Characters of a tool or prompt name (gateway names are at most 64)."""
    max_uri_chars: int = Field(default=8192, ge=256)
    """Characters of a resource URI."""
    max_meta_bytes: int = Field(default=16 * 1024, ge=256)
    """Bytes of a request's `params._meta`, as JSON."""
    max_include_patterns: int = Field(default=64, ge=1)
    """Items in `X-Bastion-Include-Servers` / `X-Bastion-Include-Tools`."""
    max_pattern_chars: int = Field(default=256, ge=16)
    """Characters of one item of those headers."""
    max_listen_resources: int = Field(default=100, ge=1)
    """Resource URIs one `subscriptions/listen` stream may ask for."""

    @model_validator(mode="after")
    def _host_check_not_silently_off(self) -> Self:
        if (problem := unguarded_bind_problem(self.host, self.allowed_hosts, self.allow_any_host)) is not None:
            raise ValueError(problem)
        return self

    public_url: str = Field(default="", pattern=r"^(https?://[^/?#\s]+)?$")
    """Scheme and authority agents reach this gateway under (`https://mcp.example.com`), the same on
    every replica: the OAuth issuer, and the resource (`<public_url>/mcp`) access tokens are bound
    to. Empty: `http://<host>:<port>` (fine for local use)."""
