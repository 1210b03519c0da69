"""`bastion audit tail`: the latest audit events, then (with --follow) new ones as they happen.

The CLI never opens ClickHouse (the embedded engine allows one process, the audit service): the
history comes from the audit service over `AUDIT_QUERY`, live events straight off `AUDIT_EVENTS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Literal

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError, NoServersError
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from libs.common.bus.nats import credentials, servers
from libs.common.bus.permissions import ADMIN
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent, AuditQuery, AuditRows, AuditVerdict, AuditVerify, audit_events

__all__ = ["tail", "verify"]

_STATUS_STYLE = {"ok": "green", "tool_error": "yellow", "error": "red", "denied": "magenta"}
# fixed widths, so the live rows line up under the history's header
_COLUMNS: tuple[tuple[str, int, Literal["left", "right"]], ...] = (
    ("time", 23, "left"),
    ("key", 16, "left"),
    ("server", 14, "left"),
    ("tool", 24, "left"),
    ("status", 10, "left"),
    ("error", 32, "left"),
    ("latency ms", 10, "right"),
)
_SEEN_MAX = 100_000


def _table(events: Iterable[AuditEvent], header: bool) -> Table:
    table = Table(show_header=header, box=None, pad_edge=False)
    for name, width, justify in _COLUMNS:
        table.add_column(name, justify=justify, min_width=width, max_width=width, no_wrap=True)
    for event in events:
        when = datetime.fromtimestamp(event.ts).astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        table.add_row(  # Text, not markup: names and errors come from agents and upstreams
            Text(when),
            Text(event.key_name),
            Text(event.server),
            Text(event.tool),
            Text(event.status, style=_STATUS_STYLE.get(event.status, "")),
            Text(event.error or event.error_kind or ""),
            Text(f"{event.latency_ms:.1f}"),
        )
    return table


async def tail(
    nats_url: str,
    limit: int,
    follow: bool,
    console: Console,
    *,
    stop: asyncio.Event | None = None,
    nkey_seed_file: str = "",
) -> int:
    """Print the `limit` newest events; with `follow`, keep printing new ones until Ctrl-C or `stop`.

    Connects as the admin role (`nkey_seed_file`: its NKey seed, if the bus requires one).

    Returns the process exit code: 0, or 1 with the reason printed when nothing answers.
    """
    lost = asyncio.Event()

    async def on_closed() -> None:
        lost.set()

    nc = await _connect(nats_url, console, nkey_seed_file, on_closed)
    if nc is None:
        return 1
    try:
        live: asyncio.Queue[AuditEvent] = asyncio.Queue()

        async def on_event(msg: Msg) -> None:
            with contextlib.suppress(ValidationError):
                for event in audit_events(msg.data):
                    live.put_nowait(event)

        if follow:  # subscribe before asking, so nothing falls between the history and the live feed
            await nc.subscribe(f"{subjects.AUDIT_EVENTS}.>", cb=on_event)
        try:
            reply = await nc.request(
                subjects.AUDIT_QUERY, AuditQuery(limit=limit).model_dump_json().encode(), timeout=5
            )
        except (NoRespondersError, TimeoutError):
            console.print(f"[red]no audit service is reachable at {escape(nats_url)}; is `bastion up` running?[/]")
            return 1
        answer = AuditRows.model_validate_json(reply.data)
        if answer.error:
            console.print(f"[yellow]audit service: {escape(answer.error)}[/]")
            if not answer.rows:
                return 1
        console.print(_table(reversed(answer.rows), header=True))  # oldest first, newest at the bottom
        if follow:
            await _follow(live, {event.event_id for event in answer.rows}, console, stop, lost)
            if lost.is_set():
                console.print(f"[red]lost the connection to NATS at {escape(nats_url)}[/]")
                return 1
        return 0
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def _follow(
    live: asyncio.Queue[AuditEvent], seen: set[str], console: Console, stop: asyncio.Event | None, lost: asyncio.Event
) -> None:
    """Print live events until `stop` (default: SIGINT/SIGTERM) or the connection is lost for good."""
    loop = asyncio.get_running_loop()
    own_stop = stop is None
    stop = stop or asyncio.Event()
    if own_stop:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    ends = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
    try:
        while True:
            getter = asyncio.ensure_future(live.get())
            await asyncio.wait({getter, *ends}, return_when=asyncio.FIRST_COMPLETED)
            if any(end.done() for end in ends):
                getter.cancel()
                return
            event = getter.result()
            if event.event_id not in seen:  # also drops a publisher's retried copy
                if len(seen) >= _SEEN_MAX:
                    seen.clear()
                seen.add(event.event_id)
                console.print(_table([event], header=False))
    finally:
        for end in ends:
            end.cancel()
        if own_stop:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


async def _connect(
    nats_url: str, console: Console, nkey_seed_file: str, on_closed: Callable[[], Awaitable[None]] | None = None
) -> NATS | None:
    """The admin role's connection, or None with the reason printed."""
    refusals: list[str] = []

    async def remember(exc: Exception) -> None:  # reported once, below, in our own words
        refusals.append(str(exc))

    try:  # a few quick attempts: a CLI should fail fast, and ride out only a short NATS blip
        nc = await nats.connect(
            servers=servers(nats_url),  # stack.json names a cluster's members comma-separated
            connect_timeout=3,
            max_reconnect_attempts=5,
            reconnect_time_wait=0.2,
            error_cb=remember,
            **({"closed_cb": on_closed} if on_closed else {}),
            **credentials(ADMIN, nkey_seed_file),
        )
    except (NoServersError, OSError, TimeoutError, NatsError) as exc:
        if any("authorization violation" in problem.lower() for problem in [*refusals, str(exc)]):
            console.print(
                f"[red]NATS at {escape(nats_url)} refused the connection: set BASTION_NATS_NKEY_SEED_FILE to the "
                "admin role's seed (a `bastion up` stack names it in stack.json: admin_nkey_seed_file)[/]"
            )
        else:
            console.print(
                f"[red]cannot connect to NATS at {escape(nats_url)}: {escape(str(exc))}; is `bastion up` running?[/]"
            )
        return None
    return nc


async def verify(
    nats_url: str, since: float | None, console: Console, *, answer_within: float = 120.0, nkey_seed_file: str = ""
) -> int:
    """Ask the audit service to check the hash chains and checkpoints.

    0 when intact, 1 when a row was tampered with (the first one is named), 2 when the check could not
    run."""
    nc = await _connect(nats_url, console, nkey_seed_file)
    if nc is None:
        return 2
    try:
        request = AuditVerify(since=since).model_dump_json().encode()
        try:
            reply = await nc.request(subjects.AUDIT_VERIFY, request, timeout=answer_within)
        except (NoRespondersError, TimeoutError):
            console.print(f"[red]no audit service answered at {escape(nats_url)}; is `bastion up` running?[/]")
            return 2
        verdict = AuditVerdict.model_validate_json(reply.data)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
    scope = f"{verdict.events} event(s) on {verdict.chains} chain(s), {verdict.checkpoints} signed checkpoint(s)"
    if verdict.error:
        console.print(f"[red]audit verify could not run: {escape(verdict.error)}[/]")
        return 2
    _vouchers(verdict, console)
    if verdict.ok:
        console.print(f"[green]OK[/]: {scope}")
        return 0
    console.print(f"[red]{verdict.problem}[/]: {escape(verdict.detail or '')}")
    _flagged(verdict, console)
    console.print(f"checked before it: {scope}" if verdict.problem != "flagged" else f"checked: {scope}")
    return 1


def _vouchers(verdict: AuditVerdict, console: Console) -> None:
    """Which producer vouches for each chain: the bus role whose subjects its events came on."""
    if not verdict.vouchers:
        return
    table = Table("chain", "vouched for by", "events", "flagged", box=None, pad_edge=False)
    for chain in verdict.vouchers:
        roles = ", ".join(role or "(no role: stored before producers were bound)" for role in chain.roles)
        table.add_row(
            Text(chain.producer or "(no chain)"),
            Text(roles or "-", style="red" if len(chain.roles) != 1 or not chain.roles[0] else ""),
            str(chain.events),
            Text(str(chain.flagged), style="red" if chain.flagged else ""),
        )
    console.print(table)


def _flagged(verdict: AuditVerdict, console: Console) -> None:
    """The events the writer flagged (stored) or refused (dead-lettered), newest first."""
    if not verdict.flagged:
        return
    table = Table("event", "chain", "sent as", "", "why", box=None, pad_edge=False)
    for event in verdict.flagged:
        table.add_row(
            Text(event.event_id or "-"),
            Text(event.producer or "-"),
            Text(event.role or "-"),
            "stored" if event.stored else "refused",
            Text(event.reason),
        )
    console.print(table)
    if verdict.flagged_total > len(verdict.flagged):
        console.print(f"... and {verdict.flagged_total - len(verdict.flagged)} more")
