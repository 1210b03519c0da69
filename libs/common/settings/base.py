"""What the services' settings share.

The stores, the NATS connection, the request path, the audit journal and the refusal log; and the bind
check that ingress and `bastion up` both make."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from libs.common.settings.handed_secrets import HandedSecrets

__all__ = [
    "AuditJournalSettings",
    "RefusalSettings",
    "RequestPathSettings",
    "ServiceSettings",
    "StoreSettings",
    "unguarded_bind_problem",
]

LOOPBACK_BINDS = frozenset({"127.0.0.1", "localhost", "::1"})


def unguarded_bind_problem(bind_host: str, allowed_hosts: list[str], allow_any_host: bool) -> str | None:
    """Why ingress bound to `bind_host` would answer under any host name unchecked.

    (DNS rebinding protection off without anyone asking for it), or None."""
    if allowed_hosts or allow_any_host or bind_host in LOOPBACK_BINDS:
        return None
    return (
        f"ingress is bound to {bind_host!r} (not loopback) without an allow-list of host names: set "
        "BASTION_ALLOWED_HOSTS to the names agents reach it under (a JSON list, e.g. "
        "'[\"gateway.example.com\"]'), or BASTION_ALLOW_ANY_HOST=true if a proxy in front checks Host and Origin"
    )


class StoreSettings(BaseSettings):
    """How the JetStream streams, KV buckets and object store are configured (`libs.common.bus.stores`).

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
        """Secrets handed through a descriptor come before the environment (a container's).

        They are `libs.common.settings.handed_secrets`, from `bastion up`."""
        return init_settings, HandedSecrets(settings_cls), env_settings, dotenv_settings, file_secret_settings

    nats_url: str = "nats://127.0.0.1:4222"
    """Comma-separated list of NATS servers."""
    nats_nkey_seed_file: str = ""
    """File holding this service's NATS NKey seed (`S…`, mode 0600); its public key must be a user of
    the nats-server with this service's permissions (`libs.common.bus.permissions`). Empty: connect
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
    and ports its job needs, `libs.common.runtime.walls`, docs/security.md). Off only to debug; a service
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
    """Port of the `/livez` and `/readyz` probes (`libs.common.runtime.probes`), answered by the service's own
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
    """How the request path notices a replica dying mid-call (`libs.common.bus.relay`).

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
    rejoin_wait: float = Field(default=60.0, ge=0, le=3600)
    """Requester (ingress, codemode; policy for chat completions): seconds after a policy or executor
    replica last answered during which a call that finds none subscribed is sent again (after pauses
    of 0.05 s doubling to 0.5 s, within the call's deadline) instead of failed: a replica leaving a
    NATS member that stopped answering is subscribed nowhere for a moment, and one restarting comes
    back (`libs.common.bus.rejoin`). The one window every such wait uses; long enough for a restart
    on a loaded machine, which can take tens of seconds. 0: fail such calls at once."""
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
    """A producer of audit events that journals them first.

    (Ingress, admin, codemode: `libs.common.audit.service_trail`)."""

    audit_journal_dir: str = ""
    """Directory of the audit write-ahead journal (`libs.common.audit.audit_journal`): each replica writes
    under `<dir>/<instance, else the service's name>` what it owes the audit log (ingress: its calls;
    admin: its changes; codemode: scripts' tool calls) and replays it when it starts again, so a
    killed replica loses no event. Empty: no journal. `bastion up` sets it."""
    audit_journal_segment_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    """Size past which the journal starts a new segment (carrying only what is still open) and
    deletes the old one."""


class RefusalSettings(BaseModel):
    """A service that checks credentials (ingress, admin) and audits the refused ones.

    (`libs.common.runtime.refusals`)."""

    auth_refusal_window: float = Field(default=10.0, gt=0, le=3600)
    """Seconds of one window of refused credentials (`libs.common.runtime.refusals`): each (surface, client
    address, credential, reason) refused in it becomes one `auth.refused` audit event at its end."""
    auth_refusal_buckets: int = Field(default=100, ge=1, le=100_000)
    """Distinct (address, credential, reason) buckets one window holds; refusals beyond them are counted
    into one `other` bucket per surface, so a flood of distinct keys costs bounded memory and events."""
