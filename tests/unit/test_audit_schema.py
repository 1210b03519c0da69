"""The audit table's columns and the event <-> row mapping (no ClickHouse needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bastion_audit.errors import BadEvent
from bastion_audit.schema import COLUMNS, DDL, from_row, to_row
from bastion_common.messages import AuditEvent

pytestmark = pytest.mark.unit


def _event(**fields: object) -> AuditEvent:
    return AuditEvent.model_validate({"status": "ok", "latency_ms": 2.5, "key_name": "ci", "tool": "t"} | fields)


def test_one_column_per_event_field_so_rows_read_back_as_events() -> None:
    assert set(COLUMNS) == set(AuditEvent.model_fields)


def test_table_dedups_on_a_key_that_ends_with_event_id_and_partitions_by_month() -> None:
    table = DDL[-1]
    assert "ENGINE = ReplacingMergeTree" in table
    assert "PARTITION BY toYYYYMM(ts)" in table
    assert "ORDER BY (key_name, server, tool, ts, event_id)" in table
    for column in ("key_name", "server", "tool", "status"):
        assert f"    {column} LowCardinality(String)" in table


def test_row_round_trip_keeps_every_field() -> None:
    event = _event(trace_id="tr", error_kind="forbidden", error_code=-32050, error="no", upstream_ms=1.0, ts=1.5e9)
    row = to_row(event)
    assert row[COLUMNS.index("ts")] == datetime.fromtimestamp(1.5e9, UTC)
    naive = tuple(v.replace(tzinfo=None) if isinstance(v, datetime) else v for v in row)  # as chdb returns it
    assert from_row(naive) == event
    assert from_row(row) == event


@pytest.mark.parametrize(
    "fields",
    [{"ts": 1e12}, {"ts": -3e9}, {"request_bytes": -1}, {"response_bytes": 2**64}, {"error_code": 2**63}],
)
def test_values_the_columns_cannot_hold_are_bad_events(fields: dict[str, object]) -> None:
    with pytest.raises(BadEvent):
        to_row(_event(**fields))
