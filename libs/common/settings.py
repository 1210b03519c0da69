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
    "CodeModeSettings",
    "ExecutorSettings",
    "IngressSettings",
    "PolicySettings",
    "RequestPathSettings",
    "ServiceSettings",
    "unguarded_bind_problem",
]

LOOPBACK_BINDS = frozenset({"127.0.0.1", "localhost", "::1"})


def unguarded_bind_problem(bind_host: str, allowed_hosts: list[str], allow_any_host: bool) -> str | None:
    """Why ingress bound to `bind_host` would answer under any host name unchecked (DNS rebinding
    protection off without anyone asking for it), or None."""
    if allowed_hosts or allow_any_host or bind_host in LOOPBACK_BINDS:
        return None
    return (
        f"ingress is bound to {bind_host!r} (not loopback) without an allow-list of host names: set "
        "BASTION_ALLOWED_HOSTS to the names agents reach it under (a JSON list, e.g. "
        "'[\"gateway.example.com\"]'), or BASTION_ALLOW_ANY_HOST=true if a proxy in front checks Host and Origin"
    )


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BASTION_", extra="ignore")

    nats_url: str = "nats://127.0.0.1:4222"
    """Comma-separated list of NATS servers."""
    nats_nkey_seed_file: str = ""
    """File holding this service's NATS NKey seed (`S…`, mode 0600); its public key must be a user of
    the nats-server with this service's permissions (`bastion_common.permissions`). Empty: connect
    without credentials (only an open nats-server accepts that)."""
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
    max_result_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    """Executor, ingress: the largest result (JSON bytes) an upstream may send back; one too large for
    a NATS message travels through the object store, one beyond this fails at once with
    `result_too_large`, naming both sizes."""
    ack_margin: float = Field(default=0.5, gt=0)
    """Responder: seconds before the requester's ack grace runs out by which a request must be taken
    and acknowledged (time for the acknowledgement to travel); a request received later is answered
    unrun, because its requester has given up on it or is about to."""

    @model_validator(mode="after")
    def _ack_before_grace(self) -> Self:
        if self.ack_grace <= self.ack_after:
            raise ValueError("ack_grace must exceed ack_after, or every slow call would count as lost")
        if self.ack_grace <= self.ack_margin:
            raise ValueError("ack_grace must exceed ack_margin, or every request would arrive too late")
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
    loopback address only localhost names are accepted (DNS-rebinding protection); bound to any
    other address, ingress refuses to start unless `allow_any_host` is set."""
    allow_any_host: bool = False
    """Serve any Host and Origin (a proxy in front checks them). Off: fail closed."""
    admin_token: SecretStr = SecretStr("")
    """Bearer credential of the admin REST API (`/admin/v1`); empty disables the admin API (503)."""
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
    audit_journal_dir: str = ""
    """Directory of the audit write-ahead journal (`bastion_common.audit_journal`): each replica
    writes under `<dir>/<instance or "ingress">` what it owes the audit log and replays it when it
    starts again, so a killed replica loses no event. Empty: no journal. `bastion up` sets it."""
    audit_journal_segment_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    """Size past which the journal starts a new segment (carrying only what is still open) and
    deletes the old one."""
    session_max_age: float = Field(default=24 * 3600.0, gt=0, le=7 * 24 * 3600.0)
    """Seconds an `Mcp-Session-Id` stays valid after `initialize`; then the agent initializes again.
    At most 7 days, the lifetime of the session records in KV (a deleted session stays deleted)."""

    # the HTTP edge (services/ingress/http_limits.py): what a client may hold before it is served
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

    admin_nats_nkey_seed_file: str = ""
    """NKey seed of the admin role: the admin API's own NATS connection (the only one that may write
    keys, servers and policy), opened only when the admin API is enabled. Empty with an admin token
    set: the admin API uses an anonymous connection (an open nats-server)."""
    secrets_key: SecretStr = SecretStr("")
    """Fernet key(s) sealing upstream secrets the admin API writes (`bastion_common.sealing`)."""


class PolicySettings(RequestPathSettings):
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    """May carry credentials (`redis://policy:<password>@host:port/0`), hence never shown."""
    bus_signing_key: SecretStr = SecretStr("")
    """HMAC key signing the work policy sends executors (`bastion_common.signing`); the same value
    on every policy and executor replica. Empty: unsigned (only for an open test bus)."""


class ExecutorSettings(RequestPathSettings):
    bus_signing_key: SecretStr = SecretStr("")
    """Policy's HMAC key (`bastion_common.signing`): set, the executor runs only work signed with it."""
    secrets_key: SecretStr = SecretStr("")
    """Fernet key(s), comma-separated, newest first: opens the sealed `env`/`headers` values of
    `bastion_servers` (`bastion_common.sealing`). Every key in the list can decrypt."""
    connect_timeout: float = 30.0
    """Seconds to wait for an upstream to accept a session before marking it unavailable."""
    reconnect_max_backoff: float = 30.0
    health_interval: float = 15.0
    """Seconds a connected upstream may stay idle before the executor pings it; a failed ping
    reconnects the session."""
    lean_calls: bool = True
    """Send each `tools/call` on a streamable-HTTP session as one POST on its pooled connection,
    parsing the answer with orjson, and on a stdio session as one line on its pipe, instead of
    through the MCP SDK's dispatcher (which still handles setup, listings, notifications and server
    requests). Measured: most of the executor's CPU per call on HTTP (docs/benchmarks.md). False:
    every call the SDK's way."""


class AuditSettings(ServiceSettings):
    clickhouse_url: str = "chdb:///tmp/bastion-clickhouse"
    """A `chdb:///abs/path` DSN (embedded engine) or an `http(s)://user:pass@host:8123/db` URL."""
    batch_size: int = 1000
    """Messages (each an event or a batch of events) per ClickHouse insert, at most."""
    flush_interval: float = 1.0
    """Seconds an event may wait for its batch to fill before it is written anyway."""


class CodeModeSettings(RequestPathSettings):
    """The codemode service: its sandbox worker pool and the limits of every run (docs/code-mode.md)."""

    sandbox_workers: int = Field(default=4, ge=1, le=64)
    """Pre-started worker processes; a worker runs one script at a time."""
    sandbox_runs_per_key: int = Field(default=2, ge=1)
    """Runs of one key at the same time; further runs of that key wait, so one key cannot take every worker."""
    sandbox_wall_seconds: float = Field(default=30.0, gt=0, le=3600)
    """Wall-clock time of a run, tool calls included; the worker is killed and replaced when exceeded."""
    sandbox_cpu_seconds: float = Field(default=10.0, gt=0, le=3600)
    """CPU time of a run (measured by the service from /proc); the worker is killed and replaced."""
    sandbox_memory_mb: int = Field(default=256, ge=16, le=65536)
    """Address space a worker may add to its start-up size (`RLIMIT_AS`)."""
    sandbox_max_output_bytes: int = Field(default=16 * 1024, ge=256)
    """Printed output kept per run; the rest is dropped and the answer says so."""
    sandbox_max_result_bytes: int = Field(default=16 * 1024, ge=256)
    """Size of the JSON of a run's `result`."""
    sandbox_max_calls: int = Field(default=100, ge=1)
    """Tool calls per run."""
    sandbox_max_parallel: int = Field(default=10, ge=1)
    """Tool calls of one run in flight at once (`parallel`)."""
    sandbox_max_code_bytes: int = Field(default=100_000, ge=1)
    """Size of a script."""
    call_timeout: float = Field(default=120.0, gt=0)
    """Seconds one tool call of a script may take (the run's wall-clock limit still applies)."""
