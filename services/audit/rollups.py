"""Analytics rollups: hourly and daily aggregates of `audit_events`, kept by materialized views.

An insert into `audit_events` also lands, aggregated, in `calls_hourly` and `calls_daily`
(AggregatingMergeTree): call, error and denial counts, latency quantile states (p50/p95/p99
merge across any grouping with `quantilesMerge`), latency, byte, cost and token sums, per
kind / key / team / customer / server / tool. Dashboards and the questions in docs/analytics.md
read these instead of scanning every event.

Every dimension is in the sorting key: AggregatingMergeTree merges rows with equal keys, so a
dimension outside it would take an arbitrary value from the rows merged. A later version that adds
a dimension or a measure migrates the tables (`ADD COLUMN` with `MODIFY ORDER BY` in one statement,
which ClickHouse allows for columns added in that statement) and replaces the views (a view stores
nothing; its target table keeps every row it wrote). The audit service runs `DDL` at open, before
it inserts anything.

Retention and layout (docs/analytics.md, "Tables"):
- `audit_events`: monthly partitions, no TTL (the audit trail is kept; drop old partitions to expire it).
- `calls_hourly`: monthly partitions, rows expire after `HOURLY_TTL_MONTHS`.
- `calls_daily`: yearly partitions, rows expire after `DAILY_TTL_YEARS`.

A redelivered event (its ack was lost) is collapsed in `audit_events` by `FINAL` but counted again
by the views, which see inserts, not merges; exact answers (who called what) read `audit_events`.
"""

from __future__ import annotations

from typing import Final

from .schema import DATABASE, TABLE

__all__ = ["DAILY", "DAILY_TTL_YEARS", "DDL", "DIMENSIONS", "HOURLY", "HOURLY_TTL_MONTHS", "QUANTILES", "VIEW_SUFFIX"]

HOURLY: Final = f"{DATABASE}.calls_hourly"
DAILY: Final = f"{DATABASE}.calls_daily"
HOURLY_TTL_MONTHS: Final = 13
DAILY_TTL_YEARS: Final = 5
QUANTILES: Final = "quantiles(0.5, 0.95, 0.99)"
"""Exact below 8192 values per group (reservoir sampling above): p50, p95, p99 in that order."""

DIMENSIONS: Final = (
    ("kind", "LowCardinality(String)", "kind"),
    ("key_name", "LowCardinality(String)", "key_name"),
    ("server", "LowCardinality(String)", "server"),
    ("tool", "LowCardinality(String)", "tool"),
    ("team", "LowCardinality(String)", "ifNull(team_id, '')"),
    ("customer", "LowCardinality(String)", "ifNull(customer_id, '')"),
)
"""(column, type, expression over `audit_events`); unknown team or customer is ''."""
_MEASURES: Final = (
    ("calls", "SimpleAggregateFunction(sum, UInt64)", "count()"),
    ("errors", "SimpleAggregateFunction(sum, UInt64)", "countIf(status = 'error')"),
    ("tool_errors", "SimpleAggregateFunction(sum, UInt64)", "countIf(status = 'tool_error')"),
    ("denied", "SimpleAggregateFunction(sum, UInt64)", "countIf(status = 'denied')"),
    ("latency_ms_sum", "SimpleAggregateFunction(sum, Float64)", "sum(latency_ms)"),
    ("latency", f"AggregateFunction({QUANTILES}, Float64)", f"{QUANTILES.replace('(', 'State(', 1)}(latency_ms)"),
    ("request_bytes", "SimpleAggregateFunction(sum, UInt64)", "sum(request_bytes)"),
    ("response_bytes", "SimpleAggregateFunction(sum, UInt64)", "sum(response_bytes)"),
    ("cost_usd", "SimpleAggregateFunction(sum, Float64)", "sum(ifNull(cost_usd, 0))"),
    ("prompt_tokens", "SimpleAggregateFunction(sum, UInt64)", "sum(ifNull(prompt_tokens, 0))"),
    ("completion_tokens", "SimpleAggregateFunction(sum, UInt64)", "sum(ifNull(completion_tokens, 0))"),
)
VIEW_SUFFIX: Final = "_mv"
"""A rollup's view is named after its table with this suffix."""


def _rollup(table: str, bucket: str, bucket_type: str, bucket_of: str, partition: str, ttl: str) -> tuple[str, ...]:
    dims = ", ".join(name for name, _, _ in DIMENSIONS)
    order = f"({bucket}, server, tool, key_name, kind, team, customer)"
    columns = [f"    {bucket} {bucket_type}"]
    columns += [f"    {name} {kind}" for name, kind, _ in DIMENSIONS]
    columns += [f"    {name} {kind}" for name, kind, _ in _MEASURES]
    create = (
        f"CREATE TABLE IF NOT EXISTS {table} (\n"
        + ",\n".join(columns)
        + f"\n)\nENGINE = AggregatingMergeTree\nPARTITION BY {partition}\n"
        + f"ORDER BY {order}\nTTL {ttl}"
    )
    selected = ", ".join(expr if expr == name else f"{expr} AS {name}" for name, _, expr in DIMENSIONS)
    measures = ",\n    ".join(f"{expr} AS {name}" for name, _, expr in _MEASURES)
    view = (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {table}{VIEW_SUFFIX} TO {table} AS\n"
        f"SELECT {bucket_of} AS {bucket}, {selected},\n    {measures}\n"
        f"FROM {TABLE}\nGROUP BY {bucket}, {dims}"
    )
    return create, view


DDL: Final = (
    *_rollup(
        HOURLY,
        "hour",
        "DateTime('UTC')",
        "toStartOfHour(ts)",
        "toYYYYMM(hour)",
        f"hour + INTERVAL {HOURLY_TTL_MONTHS} MONTH",
    ),
    *_rollup(
        DAILY,
        "day",
        "Date",
        "toDate(ts, 'UTC')",
        "toYear(day)",
        f"day + INTERVAL {DAILY_TTL_YEARS} YEAR",
    ),
)
"""Run after `schema.DDL`; every statement is idempotent."""
