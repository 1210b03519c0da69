"""The dashboard's panels: one named, fixed SQL query each, filtered by query parameters only.

Pure: a panel name and filters in, (SQL, ClickHouse parameters) out. Filter values never become
SQL text, so the dashboard's data endpoint runs nothing a caller wrote. The rollups
(`calls_hourly`) feed the charts; the recent-events table reads `audit_events FINAL`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = ["PANELS", "STATUSES", "Filters", "panel_query"]

STATUSES: Final = ("ok", "tool_error", "error", "denied")
_EVENTS_LIMIT: Final = 200
_SERVER_KINDS: Final = "kind IN ('tool_call', 'prompt_get', 'resource_read', 'resource_subscribe', 'completion')"
"""Events an upstream MCP server answered (a chat completion's `server` is its LLM provider)."""
_KEY_LABEL: Final = "if(key_name = '', if(kind = 'admin', '(admin API)', '(no key)'), key_name)"


@dataclass(frozen=True)
class Filters:
    """The dashboard's filter bar.

    A time range (epoch seconds, `since <= ts < until`) and optional key, server, status and team. Status
    narrows the events table (the rollups count every status)."""

    since: float
    until: float
    key: str | None = None
    server: str | None = None
    status: Literal["ok", "tool_error", "error", "denied"] | None = None
    team: str | None = None


def _where(filters: Filters, time_column: str, *, rollup: bool) -> tuple[str, dict[str, Any]]:
    if rollup:  # whole hours that overlap the range
        clauses = [
            f"{time_column} >= toStartOfHour(fromUnixTimestamp64Micro({{since_us:Int64}}, 'UTC'))",
            f"{time_column} < fromUnixTimestamp64Micro({{until_us:Int64}}, 'UTC')",
        ]
    else:
        clauses = [
            f"{time_column} >= fromUnixTimestamp64Micro({{since_us:Int64}}, 'UTC')",
            f"{time_column} < fromUnixTimestamp64Micro({{until_us:Int64}}, 'UTC')",
        ]
    params: dict[str, Any] = {"since_us": round(filters.since * 1e6), "until_us": round(filters.until * 1e6)}
    if filters.key is not None:
        clauses.append("key_name = {key:String}")
        params["key"] = filters.key
    if filters.server is not None:
        clauses.append("server = {server:String}")
        params["server"] = filters.server
    if filters.team is not None:
        # the rollups name it `team` ('' when unknown); the events table keeps the nullable `team_id`
        clauses.append("team = {team:String}" if rollup else "ifNull(team_id, '') = {team:String}")
        params["team"] = filters.team
    if filters.status is not None and not rollup:
        clauses.append("status = {status:String}")
        params["status"] = filters.status
    return " AND ".join(clauses), params


@dataclass(frozen=True, slots=True)
class _Panel:
    sql: str
    """The query; `{where}` stands for the time range and the filters (`_where`)."""
    rollup: bool = True
    """Reads the hourly rollups (`calls_hourly`, by `hour`), else the events (`audit_events`, by `ts`)."""
    filtered: bool = True
    """False: only the time range applies (the filter drop-downs list what the range holds)."""


def _health(kinds: str) -> _Panel:
    """Per server: operations, error rate, p95 and the last hour seen, of the events `kinds` selects."""
    return _Panel(
        "SELECT server, operations, round(errors / operations, 4) AS error_rate, round(q[2], 2) AS p95_ms,"
        " toUnixTimestamp(last_hour) AS last_hour FROM ("
        " SELECT server, sum(calls) AS operations, sum(errors) AS errors,"
        " quantilesMerge(0.5, 0.95, 0.99)(latency) AS q, max(hour) AS last_hour"
        f" FROM bastion.calls_hourly WHERE {{where}} AND {kinds} AND server != '' GROUP BY server) ORDER BY server"
    )


PANELS: Final[dict[str, _Panel]] = {
    "timeline": _Panel(
        "SELECT toUnixTimestamp(hour) AS hour, sum(calls) AS operations, sum(errors) + sum(tool_errors) AS failures,"
        " sum(denied) AS refusals FROM bastion.calls_hourly WHERE {where} GROUP BY hour ORDER BY hour"
    ),
    "latency": _Panel(
        "SELECT hour, round(q[1], 2) AS p50, round(q[2], 2) AS p95, round(q[3], 2) AS p99 FROM ("
        " SELECT toUnixTimestamp(hour) AS hour, quantilesMerge(0.5, 0.95, 0.99)(latency) AS q"
        " FROM bastion.calls_hourly WHERE {where} GROUP BY hour) ORDER BY hour"
    ),
    # per operation: `kind` tells a Code Mode meta-tool, a model (LLM) or an admin action from an
    # upstream's tool, whose `server` is empty or not an MCP server
    "tools": _Panel(
        "SELECT kind, server, tool, sum(calls) AS operations, sum(errors) + sum(tool_errors) AS failures,"
        " round(sum(cost_usd), 6) AS spend_usd"
        " FROM bastion.calls_hourly WHERE {where} GROUP BY kind, server, tool"
        " ORDER BY operations DESC, kind, server, tool LIMIT 10"
    ),
    "keys": _Panel(
        f"SELECT {_KEY_LABEL} AS key_name, sum(calls) AS operations, sum(denied) AS refusals,"
        " sum(response_bytes) AS response_bytes, round(sum(cost_usd), 6) AS spend_usd"
        " FROM bastion.calls_hourly WHERE {where} GROUP BY key_name ORDER BY operations DESC, key_name LIMIT 20"
    ),
    # spend per team and customer (the rollups' cost sums), dearest first
    "teams": _Panel(
        "SELECT team, customer, sum(calls) AS operations, round(sum(cost_usd), 6) AS spend_usd"
        " FROM bastion.calls_hourly WHERE {where} GROUP BY team, customer"
        " ORDER BY spend_usd DESC, team, customer LIMIT 20"
    ),
    # upstream MCP servers only: Code Mode runs and admin actions have none, and an LLM provider is
    # not a server (`providers`)
    "servers": _health(_SERVER_KINDS),
    # LLM providers, from the chat completions of `/v1` (`server` is the provider)
    "providers": _health("kind = 'llm_request'"),
    "events": _Panel(
        f"SELECT toUnixTimestamp64Milli(ts) AS ts_ms, {_KEY_LABEL} AS key_name, server, tool, status, error_kind,"
        " round(latency_ms, 2) AS latency_ms, ifNull(team_id, '') AS team, cost_usd, kind"
        f" FROM bastion.audit_events FINAL WHERE {{where}} ORDER BY ts DESC, event_id DESC LIMIT {_EVENTS_LIMIT}",
        rollup=False,
    ),
    # keys, servers and teams seen in the range, for the filter drop-downs
    "choices": _Panel(
        "SELECT groupUniqArrayIf(100)(key_name, key_name != '') AS keys,"
        " groupUniqArrayIf(100)(server, server != '') AS servers,"
        " groupUniqArray(100)(team) AS teams"
        " FROM bastion.calls_hourly WHERE {where}",
        filtered=False,
    ),
}


def panel_query(name: str, filters: Filters) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters of panel `name`; `KeyError` for an unknown panel."""
    panel = PANELS[name]
    if not panel.filtered:
        filters = Filters(filters.since, filters.until)
    where, params = _where(filters, "hour" if panel.rollup else "ts", rollup=panel.rollup)
    return panel.sql.format(where=where), params
