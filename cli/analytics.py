"""`bastion analytics query` and `bastion audit export`.

A query goes over NATS to the audit service (the one process that opens the embedded ClickHouse)
or, given `--clickhouse-url`, straight to a ClickHouse server; either way it passes the same
allow-list and runs under the same engine limits. Over NATS it names its principal (`cli:<user>`)
and, interrupted, tells the service to stop it (`libs.common.analytics.asking.ask`). An export asks the audit
service page by page (a cursor on (ts, event_id)), writing each page as JSON lines before asking for the next, so
memory stays constant however long the range.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import clickhouse_connect
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError, NoServersError
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from libs.common.analytics.analytics_bind import run_bound
from libs.common.analytics.asking import ask
from libs.common.analytics.queries import (
    AnalyticsAnswer,
    AnalyticsQuery,
    ExportPage,
    ExportRows,
    NotReadOnly,
    engine_limits,
    limited,
    read_only,
)
from libs.common.contracts import subjects

from .credentials import CredentialsRefused, connect_as_admin

__all__ = ["CliFailure", "cell", "export", "parse_time", "principal", "print_answer", "query_clickhouse", "query_nats"]

CLI_MEMORY = 512 * 1024 * 1024
"""Bytes a `--clickhouse-url` query may allocate on the server (the audit service's default)."""
CLI_ANSWER_BYTES = 64 * 1024 * 1024

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class CliFailure(Exception):
    """Something the user must fix or know; the message is printed as is, exit code 1."""


def parse_time(text: str, now: datetime | None = None) -> float:
    """An ISO 8601 time (UTC unless it says otherwise) or a duration back from now (`30m`, `24h`, `7d`)."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(text.strip())
    if match:
        return (now - timedelta(**{_UNITS[match[2]]: int(match[1])})).timestamp()
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliFailure(f"not a time: {text!r} (use ISO 8601 like 2026-11-23T09:00 or a duration like 24h)") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


async def _connect(nats_url: str, nkey_seed_file: str) -> NATS:
    """Connect as the admin role (`nkey_seed_file`: its NKey seed, if the bus requires one)."""
    try:
        return await connect_as_admin(nats_url, nkey_seed_file, "bastion-cli-analytics")
    except CredentialsRefused as exc:
        raise CliFailure(str(exc)) from None
    except (NoServersError, OSError, TimeoutError, NatsError) as exc:
        raise CliFailure(f"cannot connect to NATS at {nats_url}: {exc}; is `bastion up` running?") from None


async def _ask(nc: NATS, subject: str, payload: bytes, wait: float) -> bytes:
    try:
        reply = await nc.request(subject, payload, timeout=wait)
    except (NoRespondersError, TimeoutError):
        raise CliFailure("no audit service answered; is `bastion up` running?") from None
    return reply.data


def principal() -> str:
    """Who the CLI asks as: `cli:<the local user>` (its queries share that principal's allowance)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in this environment (a container without passwd)
        return "cli"


async def query_nats(nats_url: str, query: AnalyticsQuery, *, nkey_seed_file: str = "") -> AnalyticsAnswer:
    """Run `query` on the running stack's analytics store, through the audit service."""
    read_only(
        query.sql, payloads=query.payloads, parameters=query.parameters
    )  # refuse early, with the same words the service would use
    nc = await _connect(nats_url, nkey_seed_file)
    try:
        return await ask(nc, query)
    except NoRespondersError:
        raise CliFailure("no audit service answered; is `bastion up` running?") from None
    except TimeoutError:
        raise CliFailure("the audit service did not answer in time; the query was cancelled") from None
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def query_clickhouse(url: str, query: AnalyticsQuery) -> AnalyticsAnswer:
    """Run `query` on a ClickHouse server (`http(s)://user:pass@host:8123/db`), read-only."""
    sql = read_only(query.sql, payloads=query.payloads, parameters=query.parameters)
    limits = engine_limits(query, max_bytes=CLI_ANSWER_BYTES, memory=CLI_MEMORY, threads=2)
    try:
        client = clickhouse_connect.get_client(dsn=url, autogenerate_session_id=False, database="bastion")
    except Exception as exc:
        host = url.partition("://")[2].rpartition("@")[2]
        raise CliFailure(f"cannot connect to ClickHouse at {host}: {exc}") from None
    try:
        result = run_bound(client, limited(sql, limits), query.parameters)
    except NotReadOnly:
        raise
    except Exception as exc:
        return AnalyticsAnswer(error=str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
    finally:
        client.close()
    return AnalyticsAnswer(
        columns=list(result.column_names),
        types=[t.name for t in result.column_types],
        rows=[[_plain(value) for value in row] for row in result.result_rows],
    )


def _plain(value: Any) -> Any:
    """A value as JSON can carry it (the NATS path gets the same from pydantic)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def print_answer(answer: AnalyticsAnswer, fmt: str, console: Console, out: IO[str]) -> None:
    """`table` (rich, for people) or `jsonl` (one JSON object per row, for programs)."""
    if fmt == "jsonl":
        for row in answer.rows:
            out.write(json.dumps(dict(zip(answer.columns, row, strict=True)), default=str) + "\n")
        return
    table = Table(*answer.columns, show_lines=False)
    for row in answer.rows:
        table.add_row(*(Text(cell(value)) for value in row))
    console.print(table)
    console.print(f"[dim]{len(answer.rows)} row(s)[/]")


def cell(value: Any) -> str:
    """A value as a table cell.

    JSON's words for booleans and null inside arrays and maps (as the jsonl format writes them), `NULL`
    for a missing value, text as it is."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


async def _pages(nc: NATS, since: float, until: float, page_size: int) -> AsyncIterator[ExportRows]:
    page = ExportPage(since=since, until=until, limit=page_size)
    while True:
        answer = ExportRows.model_validate_json(
            await _ask(nc, subjects.AUDIT_EXPORT, page.model_dump_json().encode(), 30)
        )
        if answer.error:
            raise CliFailure(f"audit service: {answer.error}")
        yield answer
        if len(answer.rows) < page.limit:
            return
        last = answer.rows[-1]
        page = page.model_copy(update={"after_ts": last.ts, "after_id": last.event_id})


async def export(
    nats_url: str,
    since: float,
    until: float,
    out: IO[str],
    *,
    page_size: int = 1000,
    progress: Console | None = None,
    on_page: Callable[[int], None] | None = None,
    nkey_seed_file: str = "",
) -> int:
    """Write the events with `since <= ts < until` to `out` as JSON lines, oldest first; returns how many.

    With `progress` (a terminal), a live line shows the count and how far through the range it is.
    """
    if until <= since:
        raise CliFailure("--until must be after --since")
    nc = await _connect(nats_url, nkey_seed_file)
    written = 0
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=progress,
        disable=progress is None,
        transient=False,
    )
    try:
        with bar:
            task = bar.add_task("exporting", total=None)
            async for page in _pages(nc, since, until, page_size):
                for event in page.rows:
                    out.write(event.model_dump_json() + "\n")
                written += len(page.rows)
                out.flush()
                if page.rows:
                    reached = datetime.fromtimestamp(page.rows[-1].ts, UTC).isoformat(timespec="seconds")
                    bar.update(task, description=f"{written} event(s), up to {escape(reached)}")
                if on_page is not None:
                    on_page(written)
            bar.update(task, description=f"{written} event(s) exported")
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
    return written
