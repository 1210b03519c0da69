"""The ClickHouse table for audit events, and the pure event <-> row mapping.

One column per `AuditEvent` field, so a row reads back as the event that was written.
ReplacingMergeTree collapses rows with the same sorting key; a redelivered event is byte-identical
(same `event_id`, same `ts`, same everything), so it lands on the same key and partition and
`FINAL` never counts it twice. The key starts with who/what (key, server, tool) then when, which
is how analysts slice; `event_id` last makes it unique.

Two columns are the audit service's own, not the event's (so not in its hash): `vouched_by`, the
bus role whose subject the event arrived on (only that role may publish there, and the event's chain
belongs to it), and `flags`, what the service found wrong with an event it stored anyway (a key that
does not exist). A redelivered event is not inserted again at all (`ClickHouseStore.insert` looks
its id up first), so the rollups, which count inserts, count it once.

`audit_checkpoints` holds the signed heads of the events' hash chains (`libs.common.audit.audit_chain`,
`verify`): one row per (producer, seq) signed, never updated. `audit_refused` records every message
the writer dead-lettered (which role sent it, and why), for `bastion audit verify` to report.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, Final

from libs.common.contracts.messages import AuditEvent

from .errors import BadEvent

__all__ = [
    "CHECKPOINTS",
    "COLUMNS",
    "DATABASE",
    "DDL",
    "MIGRATIONS",
    "REFUSED",
    "REFUSED_COLUMNS",
    "STORED_COLUMNS",
    "TABLE",
    "from_row",
    "ticks_time",
    "to_row",
    "to_rows",
]

DATABASE: Final = "bastion"
TABLE: Final = f"{DATABASE}.audit_events"
CHECKPOINTS: Final = f"{DATABASE}.audit_checkpoints"
REFUSED: Final = f"{DATABASE}.audit_refused"

_COLUMN_TYPES: Final = {
    "v": "UInt16",
    "event_id": "String",
    "ts": "DateTime64(6, 'UTC')",
    "kind": "LowCardinality(String)",
    "trace_id": "Nullable(String)",
    "key_id": "String",
    "key_name": "LowCardinality(String)",
    "server": "LowCardinality(String)",
    "tool": "LowCardinality(String)",
    "name": "String",
    "status": "LowCardinality(String)",
    "error_kind": "LowCardinality(Nullable(String))",
    "error_code": "Nullable(Int64)",
    "error": "Nullable(String)",
    "latency_ms": "Float64",
    "upstream_ms": "Nullable(Float64)",
    "request_bytes": "UInt64",
    "response_bytes": "UInt64",
}
_ADDED_COLUMNS: Final = {
    "execution": "LowCardinality(Nullable(String))",
    "truncated": "Map(String, UInt64)",
    "parent_id": "Nullable(String)",
    "prompt_tokens": "Nullable(UInt64)",
    "completion_tokens": "Nullable(UInt64)",
    "cost_usd": "Nullable(Float64)",
    "tool_calls": "Array(String)",
    # who (owner of the key), what (content or its digest), admin changes, the hash chain
    "user_id": "LowCardinality(Nullable(String))",
    "team_id": "LowCardinality(Nullable(String))",
    "customer_id": "LowCardinality(Nullable(String))",
    "arguments": "Nullable(String) CODEC(ZSTD(3))",
    "result": "Nullable(String) CODEC(ZSTD(3))",
    "arguments_sha256": "Nullable(String)",
    "result_sha256": "Nullable(String)",
    "actor": "Nullable(String)",
    "action": "LowCardinality(Nullable(String))",
    "target": "Nullable(String)",
    "before": "Nullable(String) CODEC(ZSTD(3))",
    "after": "Nullable(String) CODEC(ZSTD(3))",
    "producer": "LowCardinality(String)",
    "seq": "UInt64",
    "prev_hash": "String",
    "hash": "String",
    # what the executor's interceptors decided (messages.InterceptorDecision)
    "interceptions": (
        "Array(Tuple(interceptor String, rule String, action LowCardinality(String), `where` LowCardinality(String),"
        " detail Nullable(String)))"
    ),
    # admin changes name the principal's roles and address besides the principal (`actor`)
    "actor_role": "LowCardinality(Nullable(String))",
    "actor_address": "Nullable(String)",
    # refused credentials, aggregated per window (libs.common.runtime.refusals)
    "credential": "Nullable(String)",
    "refusals": "Nullable(UInt64)",
    # Unix seconds as the event has them (a float reads back exactly, so the row keeps its hash)
    "first_seen": "Nullable(Float64)",
    "last_seen": "Nullable(Float64)",
    # the Cedar policy that decided a call, and the approval it waited for (docs/policy.md, docs/approvals.md)
    "policy_id": "LowCardinality(Nullable(String))",
    "approval_id": "Nullable(String)",
    # a call an MCP App made through its host (docs/mcp-apps.md)
    "initiator": "LowCardinality(Nullable(String))",
    # a routed chat completion's deployments, tried or skipped (docs/llm-routing.md)
    "llm_attempts": "Array(String)",
    # which API a chat completion came in through (docs/llm-fronts.md)
    "llm_front": "LowCardinality(Nullable(String))",
}
"""Columns added after the table was first released, in order: a table created by an older
version gets them by migration (`ALTER TABLE ... ADD COLUMN IF NOT EXISTS`, never a drop), and its
old rows read back with the column's default."""
_SERVICE_COLUMNS: Final = {
    "vouched_by": "LowCardinality(String)",
    "flags": "Array(LowCardinality(String))",
}
"""Set by the audit service when it stores an event (never part of the event or its hash)."""
COLUMNS: Final = (*_COLUMN_TYPES, *_ADDED_COLUMNS)
"""The event's own columns: what a row reads back as (`from_row`)."""
STORED_COLUMNS: Final = (*COLUMNS, *_SERVICE_COLUMNS)
"""What an insert writes (`to_row`)."""
_TS: Final = COLUMNS.index("ts")
_REFUSED_TYPES: Final = {
    "stream_seq": "UInt64",
    "ts": "DateTime64(6, 'UTC')",
    "subject": "String",
    "role": "LowCardinality(String)",
    "producer": "String",
    "event_id": "String",
    "reason": "String",
}
REFUSED_COLUMNS: Final = tuple(_REFUSED_TYPES)
_INTERCEPTIONS: Final = COLUMNS.index("interceptions")
_DECISION: Final = ("interceptor", "rule", "action", "where", "detail")
"""The fields of one `interceptions` tuple, in column order."""

DDL: Final = (
    f"CREATE DATABASE IF NOT EXISTS {DATABASE}",
    f"CREATE TABLE IF NOT EXISTS {TABLE} (\n"
    + ",\n".join(f"    {name} {kind}" for name, kind in (_COLUMN_TYPES | _ADDED_COLUMNS | _SERVICE_COLUMNS).items())
    + "\n)\nENGINE = ReplacingMergeTree\nPARTITION BY toYYYYMM(ts)\nORDER BY (key_name, server, tool, ts, event_id)",
    f"CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (\n"
    "    producer String,\n"
    "    seq UInt64,\n"
    "    head String,\n"
    "    ts DateTime64(6, 'UTC'),\n"
    "    signature String\n"
    ")\nENGINE = ReplacingMergeTree\nORDER BY (producer, seq)",
    f"CREATE TABLE IF NOT EXISTS {REFUSED} (\n"
    + ",\n".join(f"    {name} {kind}" for name, kind in _REFUSED_TYPES.items())
    + "\n)\nENGINE = ReplacingMergeTree\nPARTITION BY toYYYYMM(ts)\nORDER BY (stream_seq, event_id)",
)
"""Run in order at every start: idempotent, so any replica may run it against any older table."""

MIGRATIONS: Final = (
    *(
        ("column", name, f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS {name} {kind}")
        for name, kind in (_ADDED_COLUMNS | _SERVICE_COLUMNS).items()
    ),
    # the writer looks up a batch's event ids before inserting it (redeliveries are not inserted twice)
    (
        "index",
        "event_id_bloom",
        f"ALTER TABLE {TABLE} ADD INDEX IF NOT EXISTS event_id_bloom event_id TYPE bloom_filter(0.001) GRANULARITY 1",
    ),
    ("index", "ts_minmax", f"ALTER TABLE {TABLE} ADD INDEX IF NOT EXISTS ts_minmax ts TYPE minmax GRANULARITY 1"),
)
"""(column or index, its name, what adds it to the events table), in order: what a table created by an older
version lacks. A table that has one skips its statement, since each ALTER, even one with nothing to
do, takes the table's metadata lock and rewrites its metadata (36 of them were half the DDL's time
at every start); the statements stay idempotent for two replicas that start together."""

# What the column types can hold; a value outside would fail the whole batch insert.
_TS_RANGE: Final = (datetime(1900, 1, 1, tzinfo=UTC).timestamp(), datetime(2299, 12, 31, tzinfo=UTC).timestamp())
_INT_RANGE: Final = {
    "v": (0, 2**16 - 1),
    "error_code": (-(2**63), 2**63 - 1),
    "request_bytes": (0, 2**64 - 1),
    "response_bytes": (0, 2**64 - 1),
    "prompt_tokens": (0, 2**64 - 1),
    "completion_tokens": (0, 2**64 - 1),
    "seq": (0, 2**64 - 1),
    "refusals": (0, 2**64 - 1),
}
_INT_VALUES: Final = itemgetter(*_INT_RANGE)
_UNSIGNED_VALUES: Final = itemgetter(*(field for field, (low, _) in _INT_RANGE.items() if low == 0))
_UNSIGNED_SHORT: Final = "H"
"""The array type code of 0..65535: what every unsigned integer column holds (the narrowest is `v`'s UInt16)."""
_I32: Final = 2**31
"""`error_code`'s quick bound: any 32-bit code (JSON-RPC's are); the column holds 64 bits."""
_VALUES: Final = itemgetter(*COLUMNS)
_ROUNDS: Final = 1.5 * 2**52
"""Added to a float under 2**51 and taken away again, rounds it to an integer, half to even, without a call."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def to_row(event: AuditEvent, *, vouched_by: str = "", flags: Sequence[str] = ()) -> tuple[Any, ...]:
    """The event as a row in `STORED_COLUMNS` order; `BadEvent` if a value does not fit its column.

    `vouched_by` and `flags` are the service's own columns (`_SERVICE_COLUMNS`)."""
    return to_rows([event], vouched_by, {event.key_id: tuple(flags)})[0]


def to_rows(
    events: Iterable[AuditEvent], vouched_by: str, flags_by_key: Mapping[str, tuple[str, ...]]
) -> list[tuple[Any, ...]]:
    """The events as rows (`to_row`), each flagged as `flags_by_key` says for its key id (it holds each one).

    One loop for a batch: no Python call per event, and none the profiler counts (types and operators
    only) for an event whose values fit their columns. `ts` is written as DateTime64(6)'s own integer
    (microseconds since the epoch), which the driver writes as is, instead of a datetime it would turn
    back into that integer in Python."""
    rows: list[tuple[Any, ...]] = []
    for event in events:
        # read from the model's field dict in one C call: ~5x cheaper than an attribute access per column
        values = event.__dict__
        ts = values["ts"]
        if not _TS_RANGE[0] <= ts <= _TS_RANGE[1]:
            raise BadEvent(f"ts {ts} is outside what DateTime64 can store")
        # the unsigned columns all hold 0..65535 (the narrowest, `v`), as an array of unsigned shorts does,
        # and `error_code` any JSON-RPC code: building the array (a type: no call the profiler counts)
        # decides for the usual event; anything else is checked column by column
        code = values["error_code"]
        try:
            array(_UNSIGNED_SHORT, filter(None, _UNSIGNED_VALUES(values)))
            fits = code is None or -_I32 <= code < _I32
        except (OverflowError, TypeError):
            fits = False
        if not fits:
            _check_ints(values)
        truncated, decisions = values["truncated"], values["interceptions"]
        if truncated and any(not 0 <= size < 2**64 for size in truncated.values()):
            raise BadEvent("truncated: a size does not fit its column")
        row = list(_VALUES(values))
        # the microseconds `datetime.fromtimestamp` rounds to (half to even, after the whole seconds,
        # truncated toward zero), so a row holds what it held as a datetime
        whole = int(ts)
        row[_TS] = whole * 1_000_000 + int((ts - whole) * 1e6 + _ROUNDS - _ROUNDS)
        row[_INTERCEPTIONS] = [tuple(getattr(d, name) for name in _DECISION) for d in decisions] if decisions else []
        row += (vouched_by, list(flags_by_key[values["key_id"]]))
        rows += (tuple(row),)  # an operator, where `append` is a call the profiler counts
    return rows


def _check_ints(values: Mapping[str, Any]) -> None:
    for (field, (low, high)), value in zip(_INT_RANGE.items(), _INT_VALUES(values), strict=True):
        if value is not None and not low <= value <= high:
            raise BadEvent(f"{field}={value} does not fit its column")


def ticks_time(ticks: int) -> datetime:
    """A row's `ts` (microseconds since the epoch, `to_rows`) as the datetime it reads back as."""
    return _EPOCH + timedelta(microseconds=ticks)


def from_row(row: Sequence[Any]) -> AuditEvent:
    """The event a row of `COLUMNS` (or of `STORED_COLUMNS`: the service's own are not the event's) holds."""
    if len(row) == len(STORED_COLUMNS):
        row = row[: len(COLUMNS)]
    values = dict(zip(COLUMNS, row, strict=True))
    ts: datetime | int = values["ts"]
    if isinstance(ts, int):  # a row from `to_row`, not read back
        ts = ticks_time(ts)
    values["ts"] = (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()
    # named tuples read back as dicts; `to_row`'s own tuples (a round trip without the engine) too
    values["interceptions"] = [
        dict(zip(_DECISION, d, strict=True)) if isinstance(d, tuple) else d for d in values["interceptions"]
    ]
    return AuditEvent.model_validate(values)
