"""Analytics contracts: a read-only SQL query and its answer, an audit export page, and the
read-only check every query passes before it reaches ClickHouse.

The check parses the SQL (sqlglot's ClickHouse dialect) instead of matching words: exactly one
statement, a `SELECT` (with `WITH`, `UNION`, subqueries), no `SETTINGS` clause (it could lift the
limits), no `INTO OUTFILE`, no table function that reaches outside the database (`file`, `url`,
`remote`, `s3`, ...). The engine then runs it with `readonly=1` as a second wall.
"""

from __future__ import annotations

from typing import Any, Final

import sqlglot
from pydantic import BaseModel, ConfigDict, Field
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from .messages import AuditEvent

__all__ = [
    "MAX_EXPORT_PAGE",
    "MAX_QUERY_ROWS",
    "MAX_QUERY_SECONDS",
    "MAX_SQL_CHARS",
    "AnalyticsAnswer",
    "AnalyticsQuery",
    "ExportPage",
    "ExportRows",
    "NotReadOnly",
    "limited",
    "limits_clause",
    "read_only",
]

MAX_SQL_CHARS: Final = 20_000
MAX_QUERY_ROWS: Final = 100_000
MAX_QUERY_SECONDS: Final = 60.0
MAX_EXPORT_PAGE: Final = 1000

_TABLE_FUNCTIONS_ALLOWED: Final = frozenset({"numbers", "range", "values", "generate_series", "zeros", "one"})
"""Table functions that compute rows; every other one reads files, URLs or other servers."""


class NotReadOnly(ValueError):
    """The SQL is not a single read-only query; the message says why."""


class _Contract(BaseModel):
    model_config = ConfigDict(extra="ignore")
    v: int = 1


class AnalyticsQuery(_Contract):
    """ingress / CLI -> audit (`ANALYTICS_QUERY`): run one read-only query on the analytics store."""

    sql: str = Field(min_length=1, max_length=MAX_SQL_CHARS)
    parameters: dict[str, str | int | float] = Field(default_factory=dict, max_length=64)
    """ClickHouse query parameters (`{name:Type}` placeholders): values never become SQL text."""
    max_rows: int = Field(default=10_000, ge=1, le=MAX_QUERY_ROWS)
    max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    """Bytes of result the engine may produce (the reply must also fit the NATS max payload)."""
    timeout: float = Field(default=10.0, gt=0, le=MAX_QUERY_SECONDS)
    principal: str = Field(default="", max_length=256)
    """Who asks (`alice@example.com`, `ci-bot`): the admin service names the principal."""
    payloads: bool = False
    """Whether the caller may read payload columns (arguments, results, admin records): the admin
    service sets it from the principal's `audit:payloads` permission (the auditor role)."""


class AnalyticsAnswer(_Contract):
    columns: list[str] = Field(default_factory=list)
    types: list[str] = Field(default_factory=list)
    rows: list[list[Any]] = Field(default_factory=list)
    error: str | None = None
    """Why the query was refused or failed; `rows` is empty then."""


class ExportPage(_Contract):
    """CLI -> audit (`AUDIT_EXPORT`): the events with `since <= ts < until`, oldest first, after a cursor."""

    since: float
    until: float
    after_ts: float | None = None
    after_id: str = ""
    """The cursor: the last (ts, event_id) of the previous page; pages never overlap or skip."""
    limit: int = Field(default=MAX_EXPORT_PAGE, ge=1, le=MAX_EXPORT_PAGE)


class ExportRows(_Contract):
    rows: list[AuditEvent] = Field(default_factory=list)
    error: str | None = None


def _table_function(node: object) -> str | None:
    """The name of a table function used as a FROM / JOIN source, if `node` is one."""
    if isinstance(node, exp.Table) and isinstance(node.this, exp.Func):
        func = node.this
        return (func.name if isinstance(func, exp.Anonymous) else func.sql_name()).lower()
    return None


def read_only(sql: str) -> str:
    """`sql` without a trailing semicolon if it is a single read-only query; else `NotReadOnly`."""
    text = sql.strip().rstrip(";").strip()
    if not text:
        raise NotReadOnly("the query is empty")
    if len(text) > MAX_SQL_CHARS:
        raise NotReadOnly(f"the query is longer than {MAX_SQL_CHARS} characters")
    try:
        statements = [s for s in sqlglot.parse(text, read="clickhouse") if s is not None]
    except ParseError as exc:
        raise NotReadOnly(f"not valid SQL: {exc.errors[0]['description'] if exc.errors else exc}") from None
    except SqlglotError as exc:  # the tokenizer's errors are not ParseErrors
        raise NotReadOnly(f"not valid SQL: {exc}") from None
    if len(statements) != 1:
        raise NotReadOnly(f"exactly one statement is allowed, got {len(statements)}")
    (statement,) = statements
    if not isinstance(statement, exp.Query):
        verb = text.split(None, 1)[0].upper() if isinstance(statement, exp.Command) else statement.key.upper()
        raise NotReadOnly(f"only SELECT (or WITH ... SELECT) is allowed, not {verb}")
    for node in statement.walk():
        if isinstance(node, exp.Command | exp.DDL | exp.DML):
            raise NotReadOnly(f"only SELECT is allowed, found {node.key.upper()}")
        if isinstance(node, exp.Into) or node.args.get("into") is not None:
            raise NotReadOnly("INTO is not allowed in a read-only query")
        if node.args.get("settings"):
            raise NotReadOnly("a SETTINGS clause is not allowed (limits are set by Bastion)")
        if node.args.get("format") is not None:
            raise NotReadOnly("a FORMAT clause is not allowed (the answer is always JSON rows)")
        function = _table_function(node)
        if function is not None and function not in _TABLE_FUNCTIONS_ALLOWED:
            raise NotReadOnly(f"table function {function}() is not allowed (it reads outside the database)")
    return text


def limits_clause(query: AnalyticsQuery) -> str:
    """The SETTINGS clause a query runs under: read-only, and a limit hit fails the query instead of
    silently returning part of the answer; `readonly` comes last because nothing may be set after it."""
    return (
        f"SETTINGS max_result_rows = {int(query.max_rows)}, max_result_bytes = {int(query.max_bytes)}, "
        f"result_overflow_mode = 'throw', max_execution_time = {float(query.timeout)!r}, readonly = 1"
    )


def limited(sql: str, query: AnalyticsQuery) -> str:
    """`sql` (checked by `read_only`) with `limits_clause` appended.

    A query-level clause, not connection settings: the embedded engine keeps connection settings for
    the whole session, and `readonly=1` there would stop the audit writer's inserts. The newline ends
    a trailing `--` comment.
    """
    return f"{sql}\n{limits_clause(query)}"
