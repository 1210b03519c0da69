"""ClickHouse access: the embedded engine (`chdb:///path`) or a server (`http(s)://user:pass@host:8123/db`).

clickhouse-connect is synchronous: callers run these methods in a thread. One lock serializes
them, because the embedded engine is one in-process server and an HTTP session must not run two
queries at once. Every driver error becomes `StoreUnavailable`; the connection is (re)opened
lazily, so a store that is down at start-up is picked up when it comes back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from bastion_common.messages import AuditEvent, AuditQuery

from .errors import StoreUnavailable
from .schema import COLUMNS, DDL, TABLE, from_row

__all__ = ["ClickHouseStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")


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

    def count(self) -> int:
        """Distinct events stored (duplicates collapsed)."""
        result = self._call("count", lambda client: client.query(f"SELECT count() FROM {TABLE} FINAL"))
        return int(result.result_rows[0][0])

    def close(self) -> None:
        with self._lock:
            self._closed = True  # the embedded engine must not be reopened behind our back
            if self._client is not None:
                client, self._client = self._client, None
                client.close()

    def _call(self, what: str, action: Callable[[Client], T]) -> T:
        with self._lock:
            client = self._connected()
            try:
                return action(client)
            except Exception as exc:
                raise StoreUnavailable(f"{what} on {TABLE} failed: {exc}") from exc

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
            for statement in DDL:
                client.command(statement)
        except Exception as exc:
            client.close()
            raise StoreUnavailable(f"cannot create {TABLE}: {exc}") from exc
        log.info("clickhouse: %s ready at %s", TABLE, _redact(self.url))
        self._client = client
        return client
