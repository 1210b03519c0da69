"""ClickHouse access: the embedded engine (`chdb:///path`) or a server (`http(s)://user:pass@host:8123/db`).

clickhouse-connect is synchronous: callers run these methods in threads. The work is split over
*lanes*, each its own connection (a chdb handle, or an HTTP session) with a lock that gives it to
one call at a time, so one kind of work never waits for another: `events` (the writer's inserts),
`reads` (tail, export, verify) and `checkpoints` (signing). Analytics queries get a connection of
their own per query (`analytics`), opened read-only with the query's limits and closed after it,
so nothing an analyst runs holds a lane, and `kill` stops one in the engine.

Every driver error becomes `StoreUnavailable`; connections are (re)opened lazily, so a store that
is down at start-up is picked up when it comes back.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.insert import InsertContext

from libs.common.analytics.analytics_bind import run_bound
from libs.common.analytics.queries import (
    AnalyticsAnswer,
    AnalyticsQuery,
    ExportPage,
    NotReadOnly,
    limited,
    tenant_filters,
)
from libs.common.contracts.messages import AuditEvent, AuditQuery, ChainVoucher, FlaggedEvent

from . import merges, rollups
from .errors import StoreUnavailable
from .schema import (
    CHECKPOINTS,
    COLUMNS,
    DATABASE,
    DDL,
    MIGRATIONS,
    REFUSED,
    REFUSED_COLUMNS,
    STORED_COLUMNS,
    TABLE,
    from_row,
)
from .stored_ids import unstored
from .verify import Checkpoint

__all__ = ["Analyst", "ClickHouseStore", "Lane"]

log = logging.getLogger(__name__)

T = TypeVar("T")

Lane = Literal["events", "reads", "checkpoints"]
_LANES: Final[tuple[Lane, ...]] = ("events", "reads", "checkpoints")
_LIMITS_QUOTED = re.compile(r"\s+SETTINGS max_result_rows = .*?readonly = 1")
"""`limited`'s clause as the engine quotes it back in an error (it reformats numbers: `10.` for `10.0`)."""
FLAGGED_SHOWN: Final = 20
"""Flagged events and refused messages a verdict names (their total is always counted)."""


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"


def _as_user(url: str, user: str, password: str) -> str:
    """`url` with `user:password` as its credentials."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"))


class Analyst:
    """The restricted ClickHouse user analytics queries run as on a server.

    (`CREATE USER ... SETTINGS readonly = 1`, grants on `bastion` only: docs/analytics.md). Its profile
    holds the limits, so queries are sent without settings (a read-only user may change none)."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password


class ClickHouseStore:
    def __init__(self, url: str, analyst: Analyst | None = None) -> None:
        self.url = url
        self.embedded = url.startswith("chdb:")
        self._analyst = analyst if not self.embedded and analyst is not None and analyst.user else None
        self._clients: dict[Lane, Client] = {}
        self._insert_contexts: dict[str, InsertContext] = {}
        """The events lane's insert contexts by table, for its current connection."""
        self._locks: dict[Lane, threading.Lock] = {lane: threading.Lock() for lane in _LANES}
        self._ready = threading.Lock()
        self._created = False
        self._closed = False
        if not self.embedded and self._analyst is None:
            log.warning(
                "analytics queries run as the store's own ClickHouse user (read-only per query); set "
                "BASTION_CLICKHOUSE_ANALYST_USER to run them as a restricted user (docs/analytics.md)"
            )

    def open(self) -> None:
        """Connect and create the database and tables if missing; a no-op once open."""
        with self._locks["events"]:
            self._connected("events")

    # ------------------------------------------------------------------ the writer

    def write(self, rows: Sequence[tuple[Any, ...]], refused: Sequence[tuple[Any, ...]] = ()) -> int:
        """Insert the events of `rows` (`schema.to_row`) that are not stored yet, and the records of refused messages.

        Returns how many events were new. A redelivered batch (its ack was lost) is looked up by event id
        and not inserted again, so the rollups, which count inserts, count it once. One lane, one writer:
        nothing inserts between the look-up and the insert."""

        def action(client: Client) -> int:
            fresh = unstored(client, rows, self.embedded)
            if fresh:
                self._insert(client, TABLE, STORED_COLUMNS, fresh)
            if refused:
                self._insert(client, REFUSED, REFUSED_COLUMNS, list(refused))
            return len(fresh)

        return self._call("events", "insert", action)

    def _insert(self, client: Client, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert through the events lane's context for `table`, made once per connection.

        A fresh one runs `DESCRIBE TABLE` first (a query, a round trip to a server) for types we already
        know."""
        context = self._insert_contexts.get(table)
        if context is None:
            context = self._insert_contexts[table] = client.create_insert_context(table, columns)
        context.data = rows
        try:
            client.data_insert(context)
        finally:
            context.data = None  # the rows are not kept until the next batch

    def insert(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """`write` without refusals."""
        return self.write(rows) if rows else 0

    # ------------------------------------------------------------------ reads

    def recent(self, query: AuditQuery) -> list[AuditEvent]:
        """Newest first, duplicates collapsed (`FINAL`), optionally for one key, server and/or kind."""
        # the column names are these three constants; only the values travel as parameters
        wanted = {"key_name": query.key_name, "server": query.server, "kind": query.kind}
        params: dict[str, Any] = {column: value for column, value in wanted.items() if value is not None}
        where = [f"{column} = {{{column}:String}}" for column in params]
        params["limit"] = query.limit
        sql = (
            f"SELECT {', '.join(COLUMNS)} FROM {TABLE} FINAL"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY ts DESC, event_id DESC LIMIT {limit:UInt32}"
        )
        result = self._call("reads", "query", lambda client: client.query(sql, parameters=params))
        return [from_row(row) for row in result.result_rows]

    def page(self, page: ExportPage) -> list[AuditEvent]:
        """One export page: events in [since, until) after the cursor, oldest first, duplicates collapsed."""
        where = (
            "ts >= fromUnixTimestamp64Micro({since_us:Int64}, 'UTC')"
            " AND ts < fromUnixTimestamp64Micro({until_us:Int64}, 'UTC')"
        )
        params: dict[str, Any] = {
            "since_us": round(page.since * 1e6),
            "until_us": round(page.until * 1e6),
            "limit": page.limit,
        }
        if page.after_ts is not None:
            where += " AND (ts, event_id) > (fromUnixTimestamp64Micro({after_us:Int64}, 'UTC'), {after_id:String})"
            params |= {"after_us": round(page.after_ts * 1e6), "after_id": page.after_id}
        sql = (
            f"SELECT {', '.join(COLUMNS)} FROM {TABLE} FINAL WHERE {where} ORDER BY ts, event_id LIMIT {{limit:UInt32}}"
        )
        result = self._call("reads", "export", lambda client: client.query(sql, parameters=params))
        return [from_row(row) for row in result.result_rows]

    def count(self) -> int:
        """Distinct events stored (duplicates collapsed)."""
        result = self._call("reads", "count", lambda client: client.query(f"SELECT count() FROM {TABLE} FINAL"))
        return int(result.result_rows[0][0])

    def chains(self, since: float | None) -> list[str]:
        """The producers with events (at or after `since`); "" stands for events on no chain."""
        where, params = _since(since)
        sql = f"SELECT DISTINCT producer FROM {TABLE} FINAL{where} ORDER BY producer"
        result = self._call("reads", "chains", lambda client: client.query(sql, parameters=params))
        return [str(row[0]) for row in result.result_rows]

    def chain(self, producer: str, since: float | None) -> list[AuditEvent]:
        """One producer's events in chain order (`seq`, then `event_id` to place duplicates)."""
        where, params = _since(since)
        params["producer"] = producer
        where = f"{where} AND producer = {{producer:String}}" if where else " WHERE producer = {producer:String}"
        sql = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} FINAL{where} ORDER BY seq, event_id"
        result = self._call("reads", "chain", lambda client: client.query(sql, parameters=params))
        return [from_row(row) for row in result.result_rows]

    def vouchers(self, since: float | None) -> list[ChainVoucher]:
        """Per chain: the bus role(s) whose subjects its events arrived on, how many, how many flagged."""
        where, params = _since(since)
        sql = (
            f"SELECT producer, groupUniqArray(vouched_by), count(), countIf(notEmpty(flags)) "
            f"FROM {TABLE} FINAL{where} GROUP BY producer ORDER BY producer"
        )
        result = self._call("reads", "vouchers", lambda client: client.query(sql, parameters=params))
        return [
            ChainVoucher(producer=str(producer), roles=sorted(str(r) for r in roles), events=events, flagged=flagged)
            for producer, roles, events, flagged in result.result_rows
        ]

    def flagged(self, since: float | None) -> tuple[list[FlaggedEvent], int]:
        """Stored events the writer flagged, and messages it refused.

        (Newest first, at most `FLAGGED_SHOWN` of them), with their total."""
        where, params = _since(since)
        flagged_where = f"{where} AND notEmpty(flags)" if where else " WHERE notEmpty(flags)"
        stored = (
            f"SELECT ts, event_id, producer, vouched_by, arrayStringConcat(flags, ', '), 1 FROM {TABLE} FINAL"
            f"{flagged_where}"
        )
        refused = f"SELECT ts, event_id, producer, role, reason, 0 FROM {REFUSED} FINAL{where}"
        sql = f"SELECT * FROM ({stored} UNION ALL {refused}) ORDER BY 1 DESC LIMIT {FLAGGED_SHOWN}"
        total_sql = (
            f"SELECT (SELECT count() FROM {TABLE} FINAL{flagged_where}) + (SELECT count() FROM {REFUSED} FINAL{where})"
        )

        def action(client: Client) -> tuple[list[FlaggedEvent], int]:
            rows = client.query(sql, parameters=params).result_rows
            total = int(client.query(total_sql, parameters=params).result_rows[0][0])
            return [
                FlaggedEvent(event_id=str(i), producer=str(p), role=str(r), reason=str(why), stored=bool(kept))
                for _, i, p, r, why, kept in rows
            ], total

        return self._call("reads", "flagged", action)

    # ------------------------------------------------------------------ checkpoints

    def checkpoints(self) -> list[Checkpoint]:
        sql = f"SELECT producer, seq, head, ts, signature FROM {CHECKPOINTS} FINAL ORDER BY producer, seq"
        result = self._call("checkpoints", "checkpoints", lambda client: client.query(sql))
        return [
            Checkpoint(str(p), int(seq), str(head), _timestamp(ts), str(sig))
            for p, seq, head, ts, sig in result.result_rows
        ]

    def heads(self) -> dict[str, tuple[int, str]]:
        """Each chain's newest event: producer -> (seq, hash)."""
        sql = f"SELECT producer, max(seq), argMax(hash, seq) FROM {TABLE} WHERE producer != '' GROUP BY producer"
        result = self._call("checkpoints", "heads", lambda client: client.query(sql))
        return {str(p): (int(seq), str(head)) for p, seq, head in result.result_rows}

    def add_checkpoints(self, points: list[Checkpoint]) -> None:
        rows = [(p.producer, p.seq, p.head, datetime.fromtimestamp(p.ts, UTC), p.signature) for p in points]
        columns = ("producer", "seq", "head", "ts", "signature")
        if rows:
            self._call(
                "checkpoints", "checkpoint", lambda client: client.insert(CHECKPOINTS, rows, column_names=columns)
            )

    # ------------------------------------------------------------------ analytics

    def analytics(
        self, query: AnalyticsQuery, sql: str, limits: Mapping[str, int | float | str], marker: str
    ) -> AnalyticsAnswer:
        """Run `sql` (checked by `libs.common.analytics.queries.read_only`) on a connection of its own.

        Behind the engine's walls: on the embedded engine a fresh handle whose session is read-only with
        `limits` (set before `readonly = 1`, so the query can change neither); on a server the restricted
        analyst user (its profile holds the limits), else the store's user with `limits` and `readonly =
        1` on the query. `marker` starts the text, for `kill`. The parameters travel apart from the text,
        as the engine's own (`run_bound`: `NotReadOnly` if they would not)."""
        text = f"/* {marker} */ {sql}"
        options: dict[str, Any] = {"database": DATABASE}
        url = self.url
        if query.tenant is not None:
            if not self.embedded:  # a server's analyst profile is read-only: it could not take the filter
                raise NotReadOnly("tenant-scoped analytics runs on the embedded store only (docs/analytics.md)")
            limits = {**limits, "additional_table_filters": tenant_filters(query.tenant, self._table_names())}
        if self.embedded:
            options["settings"] = {**limits, "readonly": 1}
        elif self._analyst is not None:
            url = _as_user(self.url, self._analyst.user, self._analyst.password)
        else:
            text = limited(text, dict(limits))
        client = self._open("an analytics connection", url, **options)
        try:
            result = run_bound(client, text, query.parameters)
        except NotReadOnly:
            raise
        except Exception as exc:  # the engine quotes the query: not the clause Bastion added
            raise StoreUnavailable(_LIMITS_QUOTED.sub("", f"analytics query failed: {exc}")) from exc
        finally:
            client.close()
        return AnalyticsAnswer(
            columns=list(result.column_names),
            types=[t.name for t in result.column_types],
            rows=[list(row) for row in result.result_rows],
        )

    def _table_names(self) -> list[str]:
        """The tables and views of the `bastion` database now, each of which a tenant's filter names."""
        client = self._open("a look at the tables", database=DATABASE)
        try:
            found = client.query("SELECT name FROM system.tables WHERE database = {db:String}", {"db": DATABASE})
        finally:
            client.close()
        return [str(row[0]) for row in found.result_rows]

    def kill(self, marker: str) -> None:
        """Stop, in the engine, the analytics query `marker` names (`analytics`), on a connection of its own.

        The lanes may be busy, and the query's own connection is."""
        if not re.fullmatch(r"[A-Za-z0-9:_-]+", marker):
            raise ValueError(f"not a query marker: {marker!r}")
        statement = f"KILL QUERY WHERE startsWith(query, '/* {marker} */') ASYNC"
        client = self._open("a connection to stop a query")
        try:
            client.command(statement)
        except Exception as exc:
            raise StoreUnavailable(f"stopping query {marker} failed: {exc}") from exc
        finally:
            client.close()

    # ------------------------------------------------------------------ maintenance

    def command(self, sql: str) -> None:
        """Run one statement as is: maintenance by an operator (and tests that tamper with rows)."""
        self._call("reads", "command", lambda client: client.command(sql))

    def close(self) -> None:
        self._closed = True  # the embedded engine must not be reopened behind our back
        for lane in _LANES:
            with self._locks[lane]:
                client = self._clients.pop(lane, None)
                if client is not None:
                    client.close()

    def _call(self, lane: Lane, what: str, action: Callable[[Client], T]) -> T:
        with self._locks[lane]:
            client = self._connected(lane)
            try:
                return action(client)
            except Exception as exc:
                raise StoreUnavailable(f"{what} on {TABLE} failed: {exc}") from exc

    def _connected(self, lane: Lane) -> Client:
        client = self._clients.get(lane)
        if client is not None:
            return client
        client = self._open("ClickHouse")
        if lane == "events":
            self._insert_contexts.clear()  # they belong to the connection they were made on
        try:
            self._create(client)
        except Exception as exc:
            client.close()
            raise StoreUnavailable(f"cannot create {TABLE}: {exc}") from exc
        self._clients[lane] = client
        return client

    def _open(self, what: str, url: str = "", **options: Any) -> Client:
        """A new connection (`url`: the store's own unless given); `StoreUnavailable` saying `what` failed."""
        if self._closed:  # the embedded engine must not be reopened behind the next owner's back
            raise StoreUnavailable("the store is closed")
        if not self.embedded:
            options.setdefault("autogenerate_session_id", False)
        try:
            return clickhouse_connect.get_client(dsn=url or self.url, **options)
        except Exception as exc:
            raise StoreUnavailable(f"cannot open {what} at {_redact(self.url)}: {exc}") from exc

    def _create(self, client: Client) -> None:
        """Run the DDL once per store (idempotent, so any replica may run it on any older table)."""
        with self._ready:
            if self._created:
                return
            for statement in DDL:
                client.command(statement)
            present = _columns_and_indexes(client)
            for kind, name, statement in MIGRATIONS:
                if (kind, name) not in present:
                    client.command(statement)
            for statement in rollups.DDL:
                client.command(statement)
            for statement in merges.tuning(client):
                client.command(statement)
            self._created = True
            log.info("clickhouse: %s ready at %s", TABLE, _redact(self.url))


def _columns_and_indexes(client: Client) -> set[tuple[str, str]]:
    """("column" or "index", name) of each column and data-skipping index the events table has now."""
    database, table = TABLE.split(".")
    found = client.query(
        "SELECT 'column', name FROM system.columns WHERE database = {db:String} AND table = {t:String}"
        " UNION ALL SELECT 'index', name FROM system.data_skipping_indices"
        " WHERE database = {db:String} AND table = {t:String}",
        parameters={"db": database, "t": table},
    )
    return {(str(kind), str(name)) for kind, name in found.result_rows}


def _since(since: float | None) -> tuple[str, dict[str, Any]]:
    if since is None:
        return "", {}
    return " WHERE ts >= {since:DateTime64(6)}", {"since": datetime.fromtimestamp(since, UTC)}


def _timestamp(ts: datetime) -> float:
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()
