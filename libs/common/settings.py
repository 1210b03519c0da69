"""Service settings, read from the environment (prefix `BASTION_`).

One class per service, all here, so ops have a single place to look (docs/configuration.md
mirrors it). `bastion up` sets these for the services it starts; in a deployment they come from
the container environment.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .egress import EgressSection
from .guardrails import GuardrailsSection
from .handed_secrets import HandedSecrets

__all__ = [
    "AdminSettings",
    "AuditJournalSettings",
    "AuditSettings",
    "CatalogSettings",
    "CodeModeSettings",
    "DenyList",
    "ExecutorSettings",
    "IngressSettings",
    "OAuthSettings",
    "PolicySettings",
    "RefusalSettings",
    "RequestPathSettings",
    "ServiceSettings",
    "StoreSettings",
    "unguarded_bind_problem",
]

LOOPBACK_BINDS = frozenset({"127.0.0.1", "localhost", "::1"})

_ALLOW_ENTRY = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62}\.)*[A-Za-z0-9-]{1,63}\.?$")
"""A host name, or `*.` and a domain, as the oauth service's SSRF allow-lists take them."""


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


class StoreSettings(BaseSettings):
    """How the JetStream streams, KV buckets and object store are configured (`libs.common.stores`).

    Every service reads them, but only a store's owner applies them: when it creates the store, and
    at every start to an existing one (limits as set; the replica count raised, never lowered)."""

    model_config = SettingsConfigDict(env_prefix="BASTION_", extra="ignore")

    nats_replicas: int = Field(default=1, ge=1, le=5)
    """Replicas of every stream, KV bucket and object store: 1 on one NATS server; 3 on a cluster
    of three or more JetStream servers (each replica on another server, so one may be lost). An
    owner raises an existing store with fewer to this count when it starts; it never lowers one."""
    nats_placement_cluster: str = ""
    """JetStream cluster the stores are placed in (a super-cluster's member); empty: the server decides."""
    nats_placement_tags: list[str] = Field(default_factory=list)
    """Server tags every replica's server must carry (e.g. `["ssd"]`, `["az:eu-1a"]`; a JSON list)."""
    audit_stream_max_age: float = Field(default=7 * 24 * 3600.0, gt=0)
    """Seconds the audit stream keeps an event, written to ClickHouse or not: the longest audit
    outage events survive."""
    audit_stream_max_bytes: int = Field(default=-1, ge=-1)
    """Bytes the audit stream may hold (-1: no bound but the disk); beyond it the oldest events
    are discarded, written or not: size it to the longest outage it must carry."""
    blob_ttl: float = Field(default=300.0, ge=10)
    """Seconds a payload too large for one message stays in the object store if its receiver
    never takes it: far longer than a receiver needs, short enough to clean up."""
    blob_store_max_bytes: int = Field(default=4 * 1024**3, ge=1024 * 1024)
    """Bytes the payload object store may hold in all; a store beyond it fails (and its request,
    with a clear error)."""


class ServiceSettings(StoreSettings):
    model_config = SettingsConfigDict(env_prefix="BASTION_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Secrets handed through a descriptor (`libs.common.handed_secrets`, `bastion up`) come
        before the environment (a container's)."""
        return init_settings, HandedSecrets(settings_cls), env_settings, dotenv_settings, file_secret_settings

    nats_url: str = "nats://127.0.0.1:4222"
    """Comma-separated list of NATS servers."""
    nats_nkey_seed_file: str = ""
    """File holding this service's NATS NKey seed (`S…`, mode 0600); its public key must be a user of
    the nats-server with this service's permissions (`libs.common.permissions`). Empty: connect
    without credentials (only an open nats-server accepts that)."""
    nats_ping_interval: float = Field(default=1.0, gt=0)
    """Seconds between the client's PINGs to its NATS member. A member that answers
    `nats_max_outstanding_pings` of them in a row with nothing (a paused or hung nats-server, whose
    socket stays open) is left for another member of the cluster after interval x max to interval x
    (max + 1) seconds: 2 to 3 s by default (docs/reliability.md). A service whose event loop stalls
    longer than that leaves a healthy member too (its calls in flight then fail as may-have-run)."""
    nats_max_outstanding_pings: int = Field(default=2, ge=1)
    """Unanswered PINGs the client tolerates before it leaves its NATS member (see `nats_ping_interval`)."""
    nats_timeout_streak: int = Field(default=3, ge=1)
    """Requests timed out in a row after which the member is sent one PING; no PONG within
    `nats_connect_timeout` seconds, and the connection moves to another member. A member that answers
    keeps the connection: the timeouts were slow responders."""
    nats_connect_timeout: float = Field(default=2.0, gt=0)
    """Seconds a (re)connect to one NATS member may take before the next member is tried: a paused
    member still accepts TCP connections and never says hello. Also how long a timeout streak's PING
    waits for its PONG."""
    log_level: str = "INFO"
    confine: bool = True
    """Confine the process with the operating system at start (Landlock, seccomp, rlimits: the files
    and ports its job needs, `libs.common.walls`, docs/security.md). Off only to debug; a service
    started with it off says so in its log."""
    data_dir: str = ""
    """The folder `bastion up` keeps the stack's state in (`stack.json`, credentials, stores): no
    service may read it beyond the paths its own settings name. Empty: nothing extra is protected
    (a container's filesystem is the wall)."""
    instance: str = ""
    """Replica name used in logs and liveness subjects (policy and executor default it to the host
    name and pid). Must differ between replicas: a replica answering for a dead one hides the death."""
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of this service's Prometheus `/metrics` endpoint (0: a free one, logged); unset: none.
    `bastion up` gives every service one and prints where (docs/observability.md)."""
    metrics_host: str = "127.0.0.1"
    """Address the `/metrics` endpoint binds to."""
    health_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of the `/livez` and `/readyz` probes (`libs.common.probes`), answered by the service's own
    event loop (a stuck loop fails liveness; readiness checks NATS and the service's streams); unset:
    none. Bound on `metrics_host`; services sharing a process share one (deploy/README.md)."""
    otlp_endpoint: str = ""
    """OTLP/HTTP traces URL (e.g. `http://collector:4318/v1/traces`): set, the service records
    OpenTelemetry spans and exports them there; empty, tracing is off and costs nothing."""
    trace_sample_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    """Share of new traces recorded when tracing is on, decided where a trace starts (ingress) and
    followed by every service after it; a trace an agent started follows its `traceparent` sampled
    flag. 0.1 by default: recording every trace costs about a quarter of the gateway's CPU per call
    (docs/benchmarks.md), a tenth of them keeps tracing and content logging within 10 %."""
    audit_content: bool = True
    """Producers of audit events (ingress, codemode): record tool arguments and results. False (or
    `content_logging: false` on a key) keeps only their sizes and sha256."""
    audit_max_content_bytes: int = Field(default=64 * 1024, ge=64)
    """Producers: longest arguments / result JSON kept in an audit event (cut and listed in `truncated`
    beyond it; the sha256 is always of the whole)."""


class RequestPathSettings(ServiceSettings):
    """How the request path notices a replica dying mid-call (`libs.common.relay`).

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


class AuditJournalSettings(BaseModel):
    """A producer of audit events that journals them first (ingress, admin, codemode:
    `libs.common.service_trail`)."""

    audit_journal_dir: str = ""
    """Directory of the audit write-ahead journal (`libs.common.audit_journal`): each replica writes
    under `<dir>/<instance, else the service's name>` what it owes the audit log (ingress: its calls;
    admin: its changes; codemode: scripts' tool calls) and replays it when it starts again, so a
    killed replica loses no event. Empty: no journal. `bastion up` sets it."""
    audit_journal_segment_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    """Size past which the journal starts a new segment (carrying only what is still open) and
    deletes the old one."""


class RefusalSettings(BaseModel):
    """A service that checks credentials (ingress, admin) and audits the refused ones (`libs.common.refusals`)."""

    auth_refusal_window: float = Field(default=10.0, gt=0, le=3600)
    """Seconds of one window of refused credentials (`libs.common.refusals`): each (surface, client
    address, credential, reason) refused in it becomes one `auth.refused` audit event at its end."""
    auth_refusal_buckets: int = Field(default=100, ge=1, le=100_000)
    """Distinct (address, credential, reason) buckets one window holds; refusals beyond them are counted
    into one `other` bucket per surface, so a flood of distinct keys costs bounded memory and events."""


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
    Empty means a random per-process secret (fine for one replica)."""
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

    public_url: str = Field(default="", pattern=r"^(https?://[^/?#\s]+)?$")
    """Scheme and authority agents reach this gateway under (`https://mcp.example.com`), the same on
    every replica: the OAuth issuer, and the resource (`<public_url>/mcp`) access tokens are bound
    to. Empty: `http://<host>:<port>` (fine for local use)."""


class AdminSettings(ServiceSettings, AuditJournalSettings, RefusalSettings):
    """The admin service: the admin REST API (`/admin/v1`), analytics and the dashboard, on a port of
    its own (docs/admin-api.md). The only holder of the admin NATS role among the services."""

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
    """Fernet key(s) sealing the upstream secrets the admin API writes (`libs.common.sealing`)."""
    registries: dict[str, str] = Field(default_factory=lambda: {"official": "https://registry.modelcontextprotocol.io"})
    """MCP Registries servers may be imported from (`BASTION_REGISTRIES`, JSON: name -> base URL;
    the configuration file's `registries`), docs/registry.md."""
    registry_timeout: float = Field(default=10.0, gt=0, le=120)
    """Seconds a request to a registry may take."""


class PolicySettings(RequestPathSettings):
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    """May carry credentials (`redis://policy:<password>@host:port/0`), hence never shown."""
    bus_signing_key: SecretStr = SecretStr("")
    """HMAC key signing the work policy sends executors (`libs.common.work_signing`); the same value
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
    (`libs.common.sealing`): the same value as the admin service's, which opens them for approvers."""
    approval_ttl: float = Field(default=3600.0, ge=10.0, le=30 * 24 * 3600.0)
    """Seconds a call parked for approval waits for a person (and, once approved, for the agent to
    call again) before it expires unrun (docs/approvals.md)."""
    approval_webhook_url: str = Field(default="", pattern=r"^(https?://\S+)?$")
    """POSTed a JSON notice (no arguments) each time a call is parked, for a chat tool; empty: none."""
    approval_webhook_secret: SecretStr = SecretStr("")
    """HMAC-SHA256 key signing each webhook body (`X-Bastion-Signature: sha256=<hex>`)."""


class DenyList(BaseModel):
    """`BASTION_DENY_LIST` (JSON): what every executor refuses, whoever calls (the `deny_list` interceptor)."""

    model_config = ConfigDict(extra="forbid")

    tools: list[str] = Field(default_factory=list, max_length=1024)
    """Grant patterns (`server/tool`, `server/prompt:name`, `*/delete_*`): hidden from every listing,
    and refused when called by name."""
    max_argument_bytes: int | None = Field(default=None, gt=0)
    """Arguments (their JSON) larger than this are refused before the upstream is called."""
    terms: list[str] = Field(default_factory=list, max_length=256)
    """Words or phrases (case-insensitive) replaced by `[REDACTED]` in every result before the agent sees it."""

    @field_validator("terms")
    @classmethod
    def _plain_terms(cls, terms: list[str]) -> list[str]:
        if any(not term.strip() or len(term) > 1024 for term in terms):
            raise ValueError("each term is 1 to 1,024 characters, not only spaces")
        return terms


class ExecutorSettings(RequestPathSettings):
    bus_signing_key: SecretStr = SecretStr("")
    """Policy's HMAC key (`libs.common.work_signing`): set, the executor runs only work signed with it."""
    secrets_key: SecretStr = SecretStr("")
    """Fernet key(s), comma-separated, newest first: opens the sealed `env`/`headers` values of
    `bastion_servers` (`libs.common.sealing`). Every key in the list can decrypt."""
    stdio_root: str = ""
    """Folder holding each stdio server's own working folder (`<stdio_root>/<server>`), the only
    place a sandboxed server may write by default (docs/security.md). `bastion up` uses
    `<data_dir>/servers`; empty: a folder under the system's temporary directory."""
    stdio_write: list[str] = Field(default_factory=list)
    """Paths beyond `stdio_root` its stdio servers' `sandbox.write` may name: the executor's own box
    holds them too when it is confined (`libs.common.walls.boxes`), since a server's box lies inside
    it. `bastion up` gives every `sandbox.write` of its config file."""
    connect_timeout: float = 30.0
    """Seconds to wait for an upstream to accept a session before marking it unavailable."""
    reconnect_max_backoff: float = 30.0
    health_interval: float = 15.0
    """Seconds a connected upstream may stay idle before the executor pings it; a failed ping
    reconnects the session."""
    drift_interval: float = Field(default=2.0, ge=0)
    """Seconds between re-listings of every connected upstream's definitions (tools, prompts,
    resource templates), notification or not, so a definition changed silently is pinned against
    within this long plus one listing (docs/supply-chain.md); a listing equal to the last one costs
    the listing and one comparison. A server whose listing takes longer than a tenth of this waits
    ten times its listing's time instead. 0: re-list only when the upstream announces a change."""
    catalog_heartbeat: float = Field(default=10.0, gt=0)
    """Seconds between refreshes of a "ready" catalog entry. Another replica's "unavailable" for the
    same server does not replace a "ready" refreshed within 3 heartbeats (the server works here), so
    a replica that dies stops hiding the failure of the others after at most that long."""
    max_user_sessions: int = Field(default=256, ge=1, le=100_000)
    """Upstream sessions this executor keeps open for users of `per_user` servers; beyond it the least
    recently used one is closed (that user's next call opens a new one)."""
    lean_calls: bool = True
    """Send each `tools/call` on a streamable-HTTP session as one POST on its pooled connection,
    parsing the answer with orjson, and on a stdio session as one line on its pipe, instead of
    through the MCP SDK's dispatcher (which still handles setup, listings, notifications and server
    requests). Measured: most of the executor's CPU per call on HTTP (docs/benchmarks.md). False:
    every call the SDK's way."""
    deny_list: DenyList | None = None
    """Tools hidden and refused, an argument size limit and terms redacted from results, for every
    caller (`interceptors.deny_list`); None: no such checks (and none of their cost)."""

    guardrails: GuardrailsSection = Field(default_factory=GuardrailsSection)
    """`BASTION_GUARDRAILS` (JSON, the config file's `guardrails` section: `bastion up` sets it):
    checks on definitions, arguments and results (docs/guardrails.md). Unset: the built-in rules
    (credentials in arguments and results redacted; injection markers, hidden Unicode and
    exfiltration links in definitions flagged). `{"defaults": false}` with no rules: none at all."""
    egress: EgressSection = Field(default_factory=EgressSection)
    """`BASTION_EGRESS` (JSON, the config file's `egress` section: `bastion up` sets it): hosts every
    upstream may reach although they are not public addresses (`allow_private_hosts`), besides each
    server's own list. Unset: public addresses only."""
    pinning: bool = True
    """Pin every tool, prompt and template definition and quarantine drift, per each server's
    `pinning` mode (docs/supply-chain.md). False: definitions are served as listed, unpinned (a
    deployment that pins elsewhere; not recommended)."""

    @field_validator("deny_list", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("guardrails", "egress", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return {} if isinstance(value, str) and not value.strip() else value


class CatalogSettings(BaseSettings):
    """`bastion catalog export|verify|import` (docs/supply-chain.md, "Signed catalog")."""

    model_config = SettingsConfigDict(env_prefix="BASTION_CATALOG_", extra="ignore")

    signing_key: SecretStr = SecretStr("")
    """`BASTION_CATALOG_SIGNING_KEY`: this deployment's private ed25519 key (PEM or JWK) that signs
    exported catalogs (`bastion catalog keygen` makes one); a secret, never printed or logged."""
    trusted_keys: list[dict[str, str]] = Field(default_factory=list)
    """`BASTION_CATALOG_TRUSTED_KEYS`: public JWKs (a JSON list) whose catalogs this deployment
    verifies and imports (the exporting deployment's `bastion catalog keygen` prints its one)."""
    deployment: str = Field(default="default", max_length=128)
    """`BASTION_CATALOG_DEPLOYMENT`: names this deployment in the catalogs it exports (`dev`, `staging-eu`)."""


class AuditSettings(ServiceSettings):
    clickhouse_url: str = "chdb:///tmp/bastion-clickhouse"
    """A `chdb:///abs/path` DSN (embedded engine) or an `http(s)://user:pass@host:8123/db` URL."""
    batch_size: int = 1000
    """Messages (each an event or a batch of events) per ClickHouse insert, at most."""
    flush_interval: float = 2.0
    """Seconds an event may wait for its batch to fill before it is written anyway. Under load the
    writer inserts once per interval, and a ClickHouse insert costs ~30 ms of CPU whatever it holds:
    2 s instead of 1 s takes ~25-30 µs per call off the audit service at 500-1,000 calls/s, for rows
    visible ~0.5 s later at the median (measured in docs/benchmarks.md)."""
    checkpoint_key: SecretStr = SecretStr("")
    """HMAC key signing audit checkpoints (`libs.common.audit_chain`); empty: no checkpoints, and
    `bastion audit verify` checks the hash chains only (a rewritten chain then goes unnoticed).
    `bastion up` keeps one in `<data_dir>/credentials/checkpoint.key`."""
    checkpoint_interval: float = Field(default=60.0, gt=0)
    """Seconds between checkpoints: each signs the head of every chain that grew since the last."""
    clickhouse_analyst_user: str = ""
    """On a ClickHouse server: the restricted user analytics queries run as (`CREATE USER ... SETTINGS
    readonly = 1`, grants on `bastion` only: docs/analytics.md). Empty: they run as the store's user,
    read-only per query. Ignored by the embedded engine, which has no users."""
    clickhouse_analyst_password: SecretStr = SecretStr("")
    analytics_queries: int = Field(default=3, ge=1, le=64)
    """Analytics queries running at once, in all; one more waits a moment for a slot, then is answered
    "busy, retry after"."""
    analytics_queries_per_principal: int = Field(default=2, ge=1, le=64)
    """Analytics queries one principal (an admin person, a token) may run at once."""
    analytics_query_memory_mb: int = Field(default=512, ge=16, le=1024 * 1024)
    """Memory one analytics query may take in the engine (`max_memory_usage`); a principal's queries
    together take at most this times `analytics_queries_per_principal`, all of them this times
    `analytics_queries`. A query that needs more fails with "memory limit"."""
    analytics_query_threads: int = Field(default=1, ge=1, le=64)
    """Cores one analytics query may use (`max_threads`): the rest stay with the audit writer."""


class CodeModeSettings(RequestPathSettings, AuditJournalSettings):
    """The codemode service: its sandbox worker pool and the limits of every run (docs/code-mode.md)."""

    sandbox_workers: int = Field(default=4, ge=1, le=64)
    """Pre-started worker processes; a worker runs one script at a time."""
    sandbox_runs_per_key: int = Field(default=2, ge=1)
    """Runs of one key at the same time; further runs of that key wait, so one key cannot take every worker."""
    sandbox_burst_workers: int = Field(default=2, ge=0, le=64)
    """Extra workers started on demand, each for one run of a key that has nothing running while every
    pre-started worker is busy (stopped after that run): other keys' long scripts cannot hold it up."""
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
    search_embeddings: bool = True
    """Tool search ranks with a sentence-embedding model beside BM25 (docs/code-mode.md); False, or a
    model that cannot be loaded, leaves it lexical only, and its answers say so."""
    search_query_model: Literal["tuned", "base"] = "tuned"
    """What embeds a search's query: `tuned`, the model fine-tuned for agents' needs (recall@5 84.5 →
    94.0 % on the repository's query set; docs/code-mode.md), or `base`, the published model that
    embeds the tools. Switching recomputes the tool vectors (their needs are embedded by the query model)."""
    search_needs: bool = True
    """Rank with the shipped needs: what agents ask for when they want each of 1,587 tools of 68
    public MCP servers, matched by tool name and description (hybrid recall@1 72.2 → 89.2 %, recall@5
    93.8 → 98.8 % on the repository's query set; docs/code-mode.md, "Needs")."""
    search_needs_file: str = ""
    """A JSON-lines file of this deployment's own needs, `{"server", "tool", "needs": [...]}` per
    line, in its own server names (docs/code-mode.md, "Needs"). One that cannot be read or parsed
    is left out, and the log says which line."""
    search_needs_writer_url: str = ""
    """An OpenAI-compatible API (up to and including `/v1`) that writes needs for every tool that has
    none (a deployment's own servers): this gateway's own `/v1`, so each request passes a virtual
    key's budget and the audit trail (docs/code-mode.md, "Needs written for your tools"). Empty: none
    are written."""
    search_needs_writer_key: SecretStr = SecretStr("")
    """The bearer key for `search_needs_writer_url`: a virtual key of this gateway with an LLM budget."""
    search_needs_writer_model: str = ""
    """The model that writes needs (one a configured provider serves); empty: none are written."""
    search_needs_writer_batch: int = Field(default=8, ge=1, le=50)
    """Tools of one server asked about in one request."""
    search_needs_writer_timeout: float = Field(default=120.0, gt=0, le=600)
    """Seconds one request may take."""
    search_needs_writer_retry_seconds: float = Field(default=5.0, ge=0, le=300)
    """The first pause before a failed request is sent again (doubling, at most 300 s): three error
    answers and that batch is left until restart; an API that cannot be reached is waited for."""
    search_needs_writer_max_tools: int = Field(default=5000, ge=0)
    """Tools asked about per process lifetime: bounds what a catalog that keeps changing its
    definitions can spend."""
    search_needs_written_file: str = ""
    """Where written needs are kept (JSON lines, a needs file's format): a restart asks for none of
    them again. Empty: in memory only. `bastion up` keeps it in `<data_dir>/codemode/written-needs.jsonl`."""
    search_cache_file: str = ""
    """File keeping tool embeddings across restarts (computed once per tool definition); empty: in
    memory only. `bastion up` keeps it in `<data_dir>/codemode/tool-vectors.npz`."""
    search_cache_entries: int = Field(default=20_000, ge=100, le=1_000_000)
    """Tool embeddings kept (in memory and in the file), the least recently used dropped first
    (1.5 KB each in memory, 0.8 KB in the file)."""
    search_threads: int = Field(default_factory=lambda: min(2, os.cpu_count() or 1), ge=1, le=64)
    """Threads that embed one search's query (ONNX Runtime intra-op threads; they sleep between
    searches rather than spin: the cores are shared with the sandbox workers). Two took a query's
    embedding from about 6 ms to 3.6 on an idle machine; a query is a dozen tokens, too little work
    to share among more. Default: two, or one on a one-core machine."""
    search_warmup_wait: float = Field(default=30.0, ge=0, le=600)
    """Seconds a search waits for its tools to be embedded when many are new (a fresh start with
    tools the shipped vectors do not cover): it then ranks as a warm replica does. Past it the
    answer is lexical and says so; 0: never wait (docs/code-mode.md, "From the first search")."""
    search_query_cache: int = Field(default=1024, ge=0, le=1_000_000)
    """Query embeddings kept (1.5 KB each), the least recently used dropped first: agents repeat
    their searches, and a repeated one skips the model. 0: none kept."""


class OAuthSettings(ServiceSettings):
    """The oauth service: Bastion's authorization server toward agents and its client toward upstreams
    (docs/oauth.md)."""

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
    """Fernet key(s), newest first, sealing the access token signing key in KV (`libs.common.sealing`),
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
