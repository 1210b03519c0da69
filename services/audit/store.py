"""ClickHouse access: the embedded engine (`chdb:///path`) or a server (`http(s)://user:pass@host:8123/db`).

clickhouse-connect is synchronous: callers run these methods in a thread. One lock serializes
them, because the embedded engine is one in-process server and an HTTP session must not run two
queries at once. Every driver error becomes `StoreUnavailable`; the connection is (re)opened
lazily, so a store that is down at start-up is picked up when it comes back.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from libs.common.analytics import AnalyticsAnswer, AnalyticsQuery, ExportPage, limited
from libs.common.messages import AuditEvent, AuditQuery

from . import rollups
from .errors import StoreUnavailable
from .schema import CHECKPOINTS, COLUMNS, DDL, TABLE, from_row
from .verify import Checkpoint

__all__ = ["ClickHouseStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_LIMITS_QUOTED = re.compile(r"\s+SETTINGS max_result_rows = .*?readonly = 1")
"""`limits_clause` as the engine quotes it back in an error (it reformats numbers: `10.` for `10.0`)."""


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"


class ClickHouseStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self._client: Client | None = None
        self._lock = threading.Lock()
        self._closed = False

    def open(self) -> None:
        """Connect and create the database and table if missing; a no-op once open."""
        with self._lock:
            self._connected()

    def insert(self, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self._call("insert", lambda client: client.insert(TABLE, rows, column_names=COLUMNS))

    def recent(self, query: AuditQuery) -> list[AuditEvent]:
        """Newest first, duplicates collapsed (`FINAL`), optionally for one key and/or server."""
        where: list[str] = []
        params: dict[str, Any] = {"limit": query.limit}
        if query.key_name is not None:
            where.append("key_name = {key_name:String}")
            params["key_name"] = query.key_name
        if query.server is not None:
            where.append("server = {server:String}")
            params["server"] = query.server
        sql = (
            f"SELECT {', '.join(COLUMNS)} FROM {TABLE} FINAL"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY ts DESC, event_id DESC LIMIT {limit:UInt32}"
        )
        result = self._call("query", lambda client: client.query(sql, parameters=params))
        return [from_row(row) for row in result.result_rows]

    def select(self, query: AnalyticsQuery, sql: str) -> AnalyticsAnswer:
        """Run `sql` (already checked by `libs.common.analytics.read_only`) with the engine's
        read-only mode and `query`'s limits; a limit hit is an error, never a silently short answer."""
        text = limited(sql, query)
        try:
            result = self._call(
                "analytics query",
                lambda client: client.query(text, parameters=query.parameters or None),
                on="",
            )
        except StoreUnavailable as exc:  # the engine quotes the query: not the clause Bastion added
            raise StoreUnavailable(_LIMITS_QUOTED.sub("", str(exc))) from exc.__cause__
        return AnalyticsAnswer(
            columns=list(result.column_names),
            types=[t.name for t in result.column_types],
            rows=[list(row) for row in result.result_rows],
        )

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
        result = self._call("export", lambda client: client.query(sql, parameters=params))
        return [from_row(row) for row in result.result_rows]

    def count(self) -> int:
        """Distinct events stored (duplicates collapsed)."""
        result = self._call("count", lambda client: client.query(f"SELECT count() FROM {TABLE} FINAL"))
        return int(result.result_rows[0][0])

    def chains(self, since: float | None) -> list[str]:
        """The producers with events (at or after `since`); "" stands for events on no chain."""
        where, params = _since(since)
        sql = f"SELECT DISTINCT producer FROM {TABLE} FINAL{where} ORDER BY producer"
        result = self._call("chains", lambda client: client.query(sql, parameters=params))
        return [str(row[0]) for row in result.result_rows]

    def chain(self, producer: str, since: float | None) -> list[AuditEvent]:
        """One producer's events in chain order (`seq`, then `event_id` to place duplicates)."""
        where, params = _since(since)
        params["producer"] = producer
        where = f"{where} AND producer = {{producer:String}}" if where else " WHERE producer = {producer:String}"
        sql = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} FINAL{where} ORDER BY seq, event_id"
        result = self._call("chain", lambda client: client.query(sql, parameters=params))
        return [from_row(row) for row in result.result_rows]

    def checkpoints(self) -> list[Checkpoint]:
        sql = f"SELECT producer, seq, head, ts, signature FROM {CHECKPOINTS} FINAL ORDER BY producer, seq"
        result = self._call("checkpoints", lambda client: client.query(sql))
        return [
            Checkpoint(str(p), int(seq), str(head), _timestamp(ts), str(sig))
            for p, seq, head, ts, sig in result.result_rows
        ]

    def heads(self) -> dict[str, tuple[int, str]]:
        """Each chain's newest event: producer -> (seq, hash)."""
        sql = f"SELECT producer, max(seq), argMax(hash, seq) FROM {TABLE} WHERE producer != '' GROUP BY producer"
        result = self._call("heads", lambda client: client.query(sql))
        return {str(p): (int(seq), str(head)) for p, seq, head in result.result_rows}

    def add_checkpoints(self, points: list[Checkpoint]) -> None:
        rows = [(p.producer, p.seq, p.head, datetime.fromtimestamp(p.ts, UTC), p.signature) for p in points]
        columns = ("producer", "seq", "head", "ts", "signature")
        if rows:
            self._call("checkpoint", lambda client: client.insert(CHECKPOINTS, rows, column_names=columns))

    def command(self, sql: str) -> None:
        """Run one statement as is: maintenance by an operator (and tests that tamper with rows)."""
        self._call("command", lambda client: client.command(sql))

    def close(self) -> None:
        with self._lock:
            self._closed = True  # the embedded engine must not be reopened behind our back
            if self._client is not None:
                client, self._client = self._client, None
                client.close()

    def _call(self, what: str, action: Callable[[Client], T], *, on: str = f" on {TABLE}") -> T:
        with self._lock:
            client = self._connected()
            try:
                return action(client)
            except Exception as exc:
                raise StoreUnavailable(f"{what}{on} failed: {exc}") from exc

    def _connected(self) -> Client:
        if self._client is not None:
            return self._client
        if self._closed:
            raise StoreUnavailable("the store is closed")
        options: dict[str, Any] = {} if self.url.startswith("chdb:") else {"autogenerate_session_id": False}
        try:
            client = clickhouse_connect.get_client(dsn=self.url, **options)
        except Exception as exc:
            raise StoreUnavailable(f"cannot open ClickHouse at {_redact(self.url)}: {exc}") from exc
        try:
            for statement in (*DDL, *rollups.DDL):
                client.command(statement)
        except Exception as exc:
            client.close()
            raise StoreUnavailable(f"cannot create {TABLE}: {exc}") from exc
        log.info("clickhouse: %s ready at %s", TABLE, _redact(self.url))
        self._client = client
        return client


def _since(since: float | None) -> tuple[str, dict[str, Any]]:
    if since is None:
        return "", {}
    return " WHERE ts >= {since:DateTime64(6)}", {"since": datetime.fromtimestamp(since, UTC)}


def _timestamp(ts: datetime) -> float:
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()
