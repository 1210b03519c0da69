"""Every JetStream stream, KV bucket and object store: its configuration, declared by its owner alone.

`permissions.OWNERS` names the one role that creates each store and updates its configuration; the
bus refuses every other role both. Each owning service calls `declare_owned` when it starts (the
admin role's buckets are declared by `bastion config apply` and the admin API), which for each store
it owns:

- creates it when missing, with `StoreSettings`: its replica count, placement and limits;
- brings an existing one to those limits (a TTL, the audit stream's age and size, the object store's
  size), and raises its replica count to the setting, but never lowers it: a service started with
  the default of one replica leaves a stream an operator raised to three at three (deploy/README.md
  says how to raise a running deployment's, and how to lower one on purpose);
- fails the start, naming the setting, when the server cannot do it (three replicas on one server).

A reader started before the owner finds the store missing: a KV watch reads it as empty until it
appears (`kvwatch`), a KV handle finds no key (`nats.kv_bucket`), the object store holds nothing
(`blobs`), and a producer's audit events wait in its buffer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, Placement, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NotFoundError

from libs.common.bus.permissions import OWNERS
from libs.common.contracts import subjects
from libs.common.contracts.oauth import REGISTRATION_TTL, REVOCATION_TTL
from libs.common.settings import StoreSettings

__all__ = [
    "SESSION_STATE_TTL",
    "STORES",
    "StoreError",
    "declare",
    "declare_owned",
    "owned_by",
    "stream_config",
]

log = logging.getLogger(__name__)

SESSION_STATE_TTL: Final = 7 * 24 * 3600.0
TASK_RECORD_TTL: Final = 2 * 24 * 3600.0
"""Beyond the longest task lifetime (`HostedTask.ttl_ms`, 24 h) plus a day: records outlive their ttl
only as long as a stopped replica may need to see them expired."""
"""Seconds an agent session's log level and subscriptions (KV `bastion_sessions`) are kept after their
last change."""
RESPONSES_TTL: Final = 24 * 3600.0
"""Seconds a stored Responses conversation (KV `bastion_responses`) may be continued after its last turn."""
RESPONSES_MAX_BYTES: Final = 256 * 1024 * 1024
"""The responses bucket's size: when full, the oldest conversations go first (they are a convenience,
never the only copy: a client may always send the whole conversation)."""
_AUDIT_DEAD_MAX_AGE: Final = 30 * 24 * 3600.0
"""Dead letters of the audit stream are kept 30 days for a person to look at, never replayed."""
_DUPLICATE_WINDOW: Final = 120.0
_STREAM_EXISTS: Final = 10058
"""JetStream's error code for a create of a stream that exists (with another configuration)."""


class StoreError(RuntimeError):
    """The server would not create or update a store as configured; the message says which and why.

    `transient`: the refusal is a cluster state that passes (no leader, members down), not the
    configuration (`libs.common.bus.starting` waits for the one, fails the start on the other)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def _placement(settings: StoreSettings) -> Placement | None:
    if not settings.nats_placement_cluster and not settings.nats_placement_tags:
        return None
    return Placement(cluster=settings.nats_placement_cluster or None, tags=settings.nats_placement_tags or None)


def _kv(bucket: str, ttl: float | None = None, max_bytes: int = -1) -> Callable[[StoreSettings], StreamConfig]:
    """A KV bucket as nats-py's `create_key_value` makes it.

    (History 1, file storage), with a replica count and placement (which nats-py's KV creation leaves
    out). A bucket of `max_bytes` drops its oldest values when full; any other refuses new ones."""

    def config(settings: StoreSettings) -> StreamConfig:
        return StreamConfig(
            name=subjects.kv_stream(bucket),
            subjects=[f"{subjects.KV_ROOT}.{bucket}.>"],
            allow_rollup_hdrs=True,
            deny_delete=True,
            discard=DiscardPolicy.OLD if max_bytes > 0 else DiscardPolicy.NEW,
            duplicate_window=min(_DUPLICATE_WINDOW, ttl) if ttl else _DUPLICATE_WINDOW,
            max_age=ttl,
            max_bytes=max_bytes,
            max_consumers=-1,
            max_msgs=-1,
            max_msgs_per_subject=1,
            num_replicas=settings.nats_replicas,
            storage=StorageType.FILE,
            placement=_placement(settings),
        )

    return config


def _blobs(settings: StoreSettings) -> StreamConfig:
    """The object store for payloads over one message (`libs.common.bus.blobs`), as nats-py makes one."""
    bucket = subjects.OBJ_BLOBS
    return StreamConfig(
        name=subjects.obj_stream(bucket),
        subjects=[f"{subjects.OBJ_ROOT}.{bucket}.C.>", f"{subjects.OBJ_ROOT}.{bucket}.M.>"],
        max_age=settings.blob_ttl,
        duplicate_window=min(_DUPLICATE_WINDOW, settings.blob_ttl),  # the server refuses a longer one
        max_bytes=settings.blob_store_max_bytes,
        storage=StorageType.FILE,
        num_replicas=settings.nats_replicas,
        placement=_placement(settings),
        discard=DiscardPolicy.NEW,
        allow_rollup_hdrs=True,
        allow_direct=True,
    )


def _audit(
    name: str, subject: str, max_age: Callable[[StoreSettings], float], sized: bool
) -> Callable[[StoreSettings], StreamConfig]:
    def config(settings: StoreSettings) -> StreamConfig:
        return StreamConfig(
            name=name,
            subjects=[subject],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=max_age(settings),
            max_bytes=settings.audit_stream_max_bytes if sized else -1,
            discard=DiscardPolicy.OLD,
            duplicate_window=_DUPLICATE_WINDOW,
            num_replicas=settings.nats_replicas,
            placement=_placement(settings),
        )

    return config


@dataclass(frozen=True)
class _Store:
    config: Callable[[StoreSettings], StreamConfig]
    managed: tuple[str, ...]
    """The configuration fields an owner brings an existing store to (besides the replica count)."""


_KV_FIELDS = ("max_age",)
_LIMITS = ("max_age", "max_bytes")

STORES: Final[Mapping[str, _Store]] = {
    subjects.AUDIT_STREAM: _Store(
        _audit(subjects.AUDIT_STREAM, f"{subjects.AUDIT_EVENTS}.>", lambda s: s.audit_stream_max_age, sized=True),
        ("subjects", *_LIMITS),
    ),
    subjects.AUDIT_DEAD_STREAM: _Store(
        _audit(subjects.AUDIT_DEAD_STREAM, subjects.AUDIT_DEAD, lambda _s: _AUDIT_DEAD_MAX_AGE, sized=False),
        ("subjects", *_LIMITS),
    ),
    subjects.obj_stream(subjects.OBJ_BLOBS): _Store(_blobs, ("duplicate_window", *_LIMITS)),
    **{
        subjects.kv_stream(bucket): _Store(_kv(bucket, ttl), _KV_FIELDS)
        for bucket, ttl in (
            (subjects.KV_KEYS, None),
            (subjects.KV_SERVERS, None),
            (subjects.KV_POLICY, None),
            (subjects.KV_LLM, None),
            (subjects.KV_ADMIN, None),  # sessions and logins carry their own expiry (the admin service's)
            (subjects.KV_CATALOG, None),
            (subjects.KV_PINS, None),
            (subjects.KV_SESSIONS, SESSION_STATE_TTL),
            (subjects.KV_TASKS, TASK_RECORD_TTL),
            (subjects.KV_APPROVALS, None),  # a record carries its own expiry (`approvals`)
            (subjects.KV_OAUTH, None),
            (subjects.KV_OAUTH_REGISTRATIONS, REGISTRATION_TTL),  # a registration never used is forgotten
            (subjects.KV_OAUTH_PUBLIC, None),
            (subjects.KV_OAUTH_REVOKED, REVOCATION_TTL),  # longer than any access token lives
            (subjects.KV_OAUTH_UPSTREAM, None),
        )
    },
    subjects.kv_stream(subjects.KV_RESPONSES): _Store(
        _kv(subjects.KV_RESPONSES, RESPONSES_TTL, RESPONSES_MAX_BYTES), ("max_age", "max_bytes")
    ),
}
"""Stream name -> its configuration; the same streams as `permissions.OWNERS`, each with one owner."""


def stream_config(stream: str, settings: StoreSettings) -> StreamConfig:
    """The configuration `stream` is created with under `settings`."""
    return STORES[stream].config(settings)


def owned_by(role: str) -> list[str]:
    """The streams `role` creates and updates, in `OWNERS`' order."""
    return [stream for stream, owner in OWNERS.items() if owner == role]


def _same(a: object, b: object) -> bool:
    """Configuration values equal, an unset limit and -1/0 ("none") counting as the same."""

    def norm(value: object) -> object:
        if value is None or value == 0 or value == -1:
            return None
        return sorted(value) if isinstance(value, list) else value

    return norm(a) == norm(b)


def _changes(stream: str, current: StreamConfig, wanted: StreamConfig) -> dict[str, object]:
    """What `current` must change to match `wanted`: the managed fields, and the replica count only upwards.

    A configured placement is applied; an unconfigured one leaves the server's choice."""
    changes: dict[str, object] = {
        name: getattr(wanted, name)
        for name in STORES[stream].managed
        if not _same(getattr(current, name), getattr(wanted, name))
    }
    have, want = current.num_replicas or 1, wanted.num_replicas or 1
    if want > have:
        changes["num_replicas"] = want
    elif want < have:
        log.info(
            "stream %s keeps its %d replicas (BASTION_NATS_REPLICAS=%d): a start never lowers them", stream, have, want
        )
    if wanted.placement is not None and wanted.placement != current.placement:
        changes["placement"] = wanted.placement
    return changes


async def declare(js: JetStreamContext, stream: str, settings: StoreSettings) -> StreamConfig:
    """Create `stream` as configured, or bring the existing one to it (never lowering its replicas).

    The configuration it has afterwards. `StoreError` when the server refuses."""
    wanted = stream_config(stream, settings)
    try:
        current = (await js.stream_info(stream)).config
    except NotFoundError:
        try:
            return (await js.add_stream(wanted)).config
        except APIError as exc:
            if exc.err_code != _STREAM_EXISTS:  # else another replica created it meanwhile
                raise _refused("create", stream, wanted, exc) from None
        current = (await js.stream_info(stream)).config
    changes = _changes(stream, current, wanted)
    if not changes:
        return current
    try:
        updated = (await js.update_stream(current.evolve(**changes))).config
    except APIError as exc:
        raise _refused("update", stream, current.evolve(**changes), exc) from None
    log.info("stream %s: %s", stream, ", ".join(f"{k} now {v}" for k, v in changes.items()))
    return updated


PASSING_ERR_CODES = frozenset({10005, 10008, 10023})
"""JetStream refusals that pass once the cluster is whole: no suitable peers, temporarily unavailable,
insufficient resources."""


def _refused(what: str, stream: str, config: StreamConfig, exc: APIError) -> StoreError:
    hint = ""
    if (config.num_replicas or 1) > 1:
        hint = (
            f"; BASTION_NATS_REPLICAS={config.num_replicas} needs a NATS cluster with at least that many "
            "JetStream servers (1 on a single server)"
        )
    transient = exc.code == 503 or exc.err_code in PASSING_ERR_CODES
    return StoreError(f"NATS would not {what} stream {stream}: {exc.description or exc}{hint}", transient=transient)


async def declare_owned(js: JetStreamContext, role: str, settings: StoreSettings) -> list[StreamConfig]:
    """Declare (`declare`) every store `role` owns; their configurations."""
    return [await declare(js, stream, settings) for stream in owned_by(role)]
