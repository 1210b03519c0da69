"""The audit table's columns and the event <-> row mapping (no ClickHouse needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from libs.common.contracts.messages import AuditEvent
from services.audit.errors import BadEvent
from services.audit.schema import COLUMNS, DDL, MIGRATIONS, from_row, ticks_time, to_row, to_rows

pytestmark = pytest.mark.unit


def _event(**fields: object) -> AuditEvent:
    return AuditEvent.model_validate({"status": "ok", "latency_ms": 2.5, "key_name": "ci", "tool": "t"} | fields)


def test_one_column_per_event_field_so_rows_read_back_as_events() -> None:
    assert set(COLUMNS) == set(AuditEvent.model_fields)


def test_table_dedups_on_a_key_that_ends_with_event_id_and_partitions_by_month() -> None:
    table = next(statement for statement in DDL if statement.startswith("CREATE TABLE"))
    assert "ENGINE = ReplacingMergeTree" in table
    assert "PARTITION BY toYYYYMM(ts)" in table
    assert "ORDER BY (key_name, server, tool, ts, event_id)" in table
    for column in ("key_name", "server", "tool", "status"):
        assert f"    {column} LowCardinality(String)" in table


def test_row_round_trip_keeps_every_field() -> None:
    decision = {"interceptor": "deny_list", "rule": "tools", "action": "block", "where": "arguments"}
    event = _event(
        trace_id="tr",
        error_kind="forbidden",
        error_code=-32050,
        error="no",
        upstream_ms=1.0,
        ts=1.5e9,
        interceptions=[decision],
    )
    row = to_row(event)
    assert ticks_time(row[COLUMNS.index("ts")]) == datetime.fromtimestamp(1.5e9, UTC)
    read_back = list(row)  # as chdb returns it: a naive datetime
    read_back[COLUMNS.index("ts")] = ticks_time(row[COLUMNS.index("ts")]).replace(tzinfo=None)
    assert from_row(read_back) == event
    assert from_row(row) == event


@pytest.mark.parametrize(
    "ts",
    [
        1.5e9,
        1.7e9 + 0.1234565,
        1.7e9 + 0.0000005,
        1.7e9 + 0.0000015,
        1.7e9 + 0.9999996,
        -1.5e-6,
        -2.2e9 + 0.2500005,
        0.0,
    ],
)
def test_ts_is_written_as_the_microseconds_a_datetime_of_it_holds(ts: float) -> None:
    """DateTime64(6)'s own integer, rounded as `datetime.fromtimestamp` rounds (half to even): what was stored
    before the driver was handed integers, so a stored event keeps its hash."""
    then = datetime.fromtimestamp(ts, UTC)
    (row,) = to_rows([_event(ts=ts)], "ingress", {"": ()})
    assert row[COLUMNS.index("ts")] == (then - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert ticks_time(row[COLUMNS.index("ts")]) == then


@pytest.mark.parametrize(
    "fields",
    [
        {"ts": 1e12},
        {"ts": -3e9},
        {"request_bytes": -1},
        {"response_bytes": 2**64},
        {"error_code": 2**63},
        {"v": 2**16},
        {"seq": -1, "error_code": -32602},
        {"prompt_tokens": 1, "completion_tokens": -1},
        {"refusals": -1},
    ],
)
def test_values_the_columns_cannot_hold_are_bad_events(fields: dict[str, object]) -> None:
    with pytest.raises(BadEvent):
        to_row(_event(**fields))


def test_values_at_their_columns_bounds_are_stored() -> None:
    highest = {"request_bytes": 2**64 - 1, "response_bytes": 2**64 - 1, "seq": 2**64 - 1, "v": 2**16 - 1}
    for fields in ({"error_code": -(2**63)}, {"error_code": 2**63 - 1}, highest, {"prompt_tokens": 0}):
        event = _event(ts=1.5e9, **fields)
        assert from_row(to_row(event)) == event


def test_columns_added_later_reach_older_tables_by_migration_never_by_a_drop() -> None:
    create = next(statement for statement in DDL if statement.startswith("CREATE TABLE"))
    added = [statement.split("ADD COLUMN IF NOT EXISTS ")[1] for kind, _, statement in MIGRATIONS if kind == "column"]
    assert [name for kind, name, _ in MIGRATIONS if kind == "column"] == [column.split()[0] for column in added]
    assert [column.split()[0] for column in added] == [
        "execution",
        "truncated",
        "parent_id",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "tool_calls",
        "user_id",
        "team_id",
        "customer_id",
        "arguments",
        "result",
        "arguments_sha256",
        "result_sha256",
        "actor",
        "action",
        "target",
        "before",
        "after",
        "producer",
        "seq",
        "prev_hash",
        "hash",
        "interceptions",
        "actor_role",
        "actor_address",
        "credential",
        "refusals",
        "first_seen",
        "last_seen",
        "policy_id",
        "approval_id",
        "initiator",
        "llm_attempts",
        "llm_front",
        "vouched_by",  # the audit service's own (not the event's)
        "flags",
    ]
    for column in added:
        assert f"    {column}" in create  # a new table has them from the start
    assert not any("DROP" in statement.upper() for statement in (*DDL, *(m[2] for m in MIGRATIONS)))


def test_an_admin_change_with_content_and_chain_fields_round_trips() -> None:
    event = _event(
        kind="admin",
        actor="admin-token@127.0.0.1",
        action="key.revoke",
        target="bob",
        before='{"revoked":false}',
        after='{"revoked":true}',
        user_id="u1",
        team_id="t1",
        customer_id="c1",
        arguments='{"a":1}',
        arguments_sha256="0" * 64,
        producer="ingress-x",
        seq=7,
        prev_hash="a" * 64,
        hash="b" * 64,
        ts=1.5e9,
    )
    assert from_row(to_row(event)) == event


def test_execution_and_truncation_round_trip() -> None:
    event = _event(execution="may_have_run", truncated={"name": 3_800_000}, ts=1.5e9)
    assert from_row(to_row(event)) == event


def test_an_llm_request_and_its_child_round_trip() -> None:
    llm = _event(
        kind="llm_request", prompt_tokens=120, completion_tokens=30, cost_usd=0.00018, tool_calls=["a__b"], ts=1.5e9
    )
    child = _event(parent_id=llm.event_id, ts=1.5e9)
    assert from_row(to_row(llm)) == llm
    assert from_row(to_row(child)) == child


def test_a_negative_token_count_is_a_bad_event() -> None:
    with pytest.raises(BadEvent):
        to_row(_event(kind="llm_request", prompt_tokens=-1))


def test_a_truncated_size_outside_its_column_is_a_bad_event() -> None:
    with pytest.raises(BadEvent):
        to_row(_event(truncated={"name": -1}))
