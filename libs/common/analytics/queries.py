"""Analytics contracts.

A read-only SQL query and its answer (and the cancel a caller sends when it gives up), an audit export
page, and the check every query passes before it reaches ClickHouse.

The check is the allow-list of `analytics_sql` (`read_only` here, for the HTTP layer and the CLI
to refuse early with the audit service's own words): tables of the `bastion` database only,
functions from a documented list, one `SELECT`. The audit service checks again and runs the query
behind a second wall in the engine (read-only connection, per-query limits; docs/analytics.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from libs.common.analytics.analytics_sql import DATABASE, MAX_SQL_CHARS, NotReadOnly, checked
from libs.common.contracts.messages import AuditEvent
from libs.common.contracts.messages_base import BusMessage, new_id

__all__ = [
    "MAX_EXPORT_PAGE",
    "MAX_QUERY_ROWS",
    "MAX_QUERY_SECONDS",
    "MAX_SQL_CHARS",
    "AnalyticsAnswer",
    "AnalyticsCancel",
    "AnalyticsQuery",
    "ExportPage",
    "ExportRows",
    "NotReadOnly",
    "TenantRows",
    "engine_limits",
    "limited",
    "read_only",
    "tenant_filters",
]

MAX_QUERY_ROWS: Final = 100_000
MAX_QUERY_SECONDS: Final = 60.0
MAX_EXPORT_PAGE: Final = 1000
ANSWER_GRACE: Final = 5.0
"""Seconds a caller waits beyond a query's `timeout`: the audit service stops it at `timeout` and
answers well before."""

_QUERY_ID: Final = r"^[A-Za-z0-9_-]{1,64}$"
_TenantId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
"""A customer's or team's id (`entities.Slug`): no quote or backslash can reach the engine's filter."""

TENANT_COLUMNS: Final[Mapping[str, tuple[str, str]]] = {
    "audit_events": ("customer_id", "team_id"),
    "calls_hourly": ("customer", "team"),
    "calls_daily": ("customer", "team"),
}
"""The tables of the `bastion` database whose rows belong to a tenant: (customer column, team column).
Every other table (checkpoints, refused messages, the rollups' views) holds no tenant's rows and
answers a tenant-scoped caller with none."""


class TenantRows(BaseModel):
    """The rows a tenant-scoped caller may read: those of these customers, or of these teams.

    The admin service sets it from the principal's scoped `analytics:read` bindings; the audit service
    applies it in the engine (`tenant_filters`), under whatever SQL the caller wrote."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customers: tuple[_TenantId, ...] = Field(default=(), max_length=256)
    teams: tuple[_TenantId, ...] = Field(default=(), max_length=1024)


def tenant_filters(tenant: TenantRows, tables: Iterable[str]) -> str:
    """The engine's `additional_table_filters` for a query of `tenant`.

    Each of `tables` (the `bastion` database's, as the engine lists them now) read through a condition,
    so a subquery, a join, a `WITH` or a view reads no other tenant's row: a tenant's table keeps the
    rows whose customer or team is the tenant's, every other table keeps none ("0"). The ids are slugs,
    so the quoting below holds."""

    def one_of(column: str, ids: tuple[str, ...]) -> str:
        quoted = ", ".join("\\'" + i + "\\'" for i in ids)  # a string within the map's string value
        return f"{column} IN ({quoted})" if ids else "0"

    conditions = {}
    for table in sorted(tables):
        columns = TENANT_COLUMNS.get(table)
        condition = "0"
        if columns is not None:
            condition = f"{one_of(columns[0], tenant.customers)} OR {one_of(columns[1], tenant.teams)}"
        conditions[f"{DATABASE}.{table}"] = condition
    return "{" + ", ".join(f"'{name}': '{condition}'" for name, condition in conditions.items()) + "}"


class AnalyticsQuery(BusMessage):
    """admin API / CLI -> audit (`ANALYTICS_QUERY`): run one read-only query on the analytics store."""

    sql: str = Field(min_length=1, max_length=MAX_SQL_CHARS)
    parameters: dict[str, str | int | float] = Field(default_factory=dict, max_length=64)
    """Values of the query's typed placeholders (`{name:String}`), sent to ClickHouse apart from the
    SQL text; a parameter no typed placeholder uses is refused (`analytics_params`)."""
    max_rows: int = Field(default=10_000, ge=1, le=MAX_QUERY_ROWS)
    max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    """Bytes of result the engine may produce (the reply must also fit the NATS max payload)."""
    timeout: float = Field(default=10.0, gt=0, le=MAX_QUERY_SECONDS)
    principal: str = Field(default="", max_length=256)
    """Who asks (`alice@example.com`, `ci-bot`, `cli:<user>`): concurrent queries and their memory are
    bounded per principal. Empty: an unnamed caller, all of whom share one allowance."""
    payloads: bool = False
    """Whether the caller may read payload columns (arguments, results, admin records and their
    digests: `analytics_sql.PAYLOAD_COLUMNS`); the admin service sets it from the principal's
    `audit:payloads` permission (the auditor role)."""
    query_id: str = Field(default_factory=new_id, pattern=_QUERY_ID)
    """Names the query for `AnalyticsCancel`."""
    tenant: TenantRows | None = None
    """None: every row (a principal holding `analytics:read` everywhere); else only the rows of these
    customers and teams, enforced in the engine whatever the SQL (`tenant_filters`)."""


class AnalyticsAnswer(BusMessage):
    columns: list[str] = Field(default_factory=list)
    types: list[str] = Field(default_factory=list)
    rows: list[list[Any]] = Field(default_factory=list)
    error: str | None = None
    """Why the query was refused or failed; `rows` is empty then."""
    error_kind: Literal["refused", "busy", "limit", "cancelled", "failed"] | None = None
    """`refused`: the allow-list refused it (not run); `busy`: too many queries run (retry after
    `retry_after`); `limit`: it hit a limit (time, memory, rows, bytes) and was stopped; `cancelled`:
    its caller gave up; `failed`: the engine failed it (a bad column, the store unavailable)."""
    retry_after: float | None = None
    """With `busy`: seconds after which a slot is likely free."""


class AnalyticsCancel(BusMessage):
    """admin API / CLI -> audit (`ANALYTICS_CANCEL`): the caller of `query_id` gave up; stop it."""

    query_id: str = Field(pattern=_QUERY_ID)


class ExportPage(BusMessage):
    """CLI -> audit (`AUDIT_EXPORT`): the events with `since <= ts < until`, oldest first, after a cursor."""

    since: float
    until: float
    after_ts: float | None = None
    after_id: str = ""
    """The cursor: the last (ts, event_id) of the previous page; pages never overlap or skip."""
    limit: int = Field(default=MAX_EXPORT_PAGE, ge=1, le=MAX_EXPORT_PAGE)


class ExportRows(BusMessage):
    rows: list[AuditEvent] = Field(default_factory=list)
    error: str | None = None


def read_only(sql: str, *, payloads: bool = False, parameters: Mapping[str, object] | None = None) -> str:
    """The SQL the engine runs for `sql` with `parameters` if the allow-list admits both.

    Else `NotReadOnly` naming the part refused (`analytics_sql.checked`)."""
    return checked(sql, payloads=payloads, parameters=parameters)


def engine_limits(query: AnalyticsQuery, *, max_bytes: int, memory: int, threads: int) -> dict[str, int | float | str]:
    """The engine settings a query runs under.

    A limit hit fails the query instead of silently returning part of the answer. `max_bytes` caps the
    query's own `max_bytes` (what one reply can carry), `memory` is the bytes one query may allocate,
    `threads` the cores it may use."""
    return {
        "max_result_rows": int(query.max_rows),
        "max_result_bytes": int(min(query.max_bytes, max_bytes)),
        "result_overflow_mode": "throw",
        "max_execution_time": float(query.timeout),
        "timeout_overflow_mode": "throw",
        "max_memory_usage": int(memory),
        "max_threads": int(threads),
    }


def limited(sql: str, settings: dict[str, int | float | str]) -> str:
    """`sql` (checked by `read_only`) with `settings` as a SETTINGS clause ending in `readonly = 1`.

    (Nothing may be set after it): for a connection whose session must stay writable. The newline ends a
    trailing `--` comment."""
    values = ", ".join(f"{name} = {value!r}" for name, value in settings.items())
    return f"{sql}\nSETTINGS {values}, readonly = 1"
