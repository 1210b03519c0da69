"""`bastion tools pending|diff|approve|reject`.

A person decides on pinned definitions that drifted (docs/supply-chain.md). Over the admin role's NATS
connection to KV `bastion_pins`, the way `bastion config apply` writes configuration; the logic is
`libs.common.supply_chain.pin_store`'s, shared with the admin API. Each approval and rejection is an
admin audit event naming who decided (the CLI's principal: `BASTION_PRINCIPAL`, else
`cli:<user>@<host>`).
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.markup import escape

from .invocation import cli_command
from .terminal import FlagsGroup, console

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.js.kv import KeyValue

    from libs.common.contracts.messages import AuditEvent
    from libs.common.supply_chain.pin_store import PinChange

__all__ = ["actor", "audited", "audited_events", "run_as_admin", "run_on_pins", "tools_app"]

T = TypeVar("T")

tools_app = typer.Typer(
    help="Pinned tool definitions: what drifted and waits for a person, and the decision.",
    no_args_is_help=True,
    cls=FlagsGroup,
)

NatsUrl = Annotated[str | None, typer.Option(help="NATS of the stack (default: BASTION_NATS_URL, then stack.json).")]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Where stack.json is (default: .bastion).")]
Target = Annotated[str, typer.Argument(help="SERVER/NAME: the server and the tool's (prompt's, template's) own name.")]
Sha = Annotated[
    str | None,
    typer.Option("--sha", help="The pending definition's hash as `diff` showed it (refused if another one waits now)."),
]


def actor() -> str:
    """Who this CLI acts as, in audit events."""
    return os.environ.get("BASTION_PRINCIPAL") or f"cli:{getpass.getuser()}@{socket.gethostname()}"


def run_as_admin(
    url: str,
    seed: str,
    work: Callable[[NATS], Awaitable[T]],
    *,
    within: float,
    failing: str,
    expected: tuple[type[Exception], ...] = (),
) -> T:
    """`work(nc)` over the admin role's NATS connection, given `within` seconds.

    A failure is one line and exit code 1: refused credentials and `expected` exceptions as they say,
    anything else as `<failing>: <what happened>`."""
    import asyncio

    from .credentials import CredentialsRefused, connect_as_admin

    async def run() -> T:
        nc = await connect_as_admin(url, seed, "bastion-cli")
        try:
            return await work(nc)
        finally:
            await nc.close()

    said: tuple[type[Exception], ...] = (CredentialsRefused, *expected)
    try:
        return asyncio.run(asyncio.wait_for(run(), within))
    except said as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    except Exception as exc:
        print(f"error: {failing}: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None


def run_on_pins(nats_url: str | None, data_dir: Path | None, work: Callable[[NATS, KeyValue], Awaitable[T]]) -> T:
    """`work(nc, pins)` over the admin role's connection; a clear message and exit code 1 or 2 on failure."""
    from libs.common.bus.nats import kv_bucket
    from libs.common.contracts import subjects
    from libs.common.contracts.pins import PinError
    from libs.common.supply_chain.catalog_manifest import ManifestError

    from .stackfile import find_admin_credentials, find_nats_url

    folder = data_dir or Path(".bastion")
    try:
        url = find_nats_url(nats_url, folder)
        seed = find_admin_credentials(folder).nkey_seed_file
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None

    async def on_pins(nc: NATS) -> T:
        return await work(nc, await kv_bucket(nc.jetstream(), subjects.KV_PINS))

    failing = f"could not reach the pins at NATS {url}"
    return run_as_admin(url, seed, on_pins, within=60, failing=failing, expected=(PinError, ManifestError))


async def audited(nc: NATS, changes: Sequence[PinChange], by: str, within: float = 10.0) -> int:
    """Publish one admin audit event per change; returns how many the audit stream did not take."""
    from libs.common.supply_chain.pin_store import pin_audit_event

    return await audited_events(nc, [pin_audit_event(change, by) for change in changes], within)


async def audited_events(nc: NATS, events: Sequence[AuditEvent], within: float = 10.0) -> int:
    """Publish admin audit events on the admin role's chain; returns how many the stream did not take."""
    from libs.common.audit.audit_chain import producer_id
    from libs.common.audit.audit_publisher import AuditPublisher
    from libs.common.bus.permissions import ADMIN

    publisher = AuditPublisher(nc, producer=producer_id(ADMIN))
    await publisher.start()
    for event in events:
        publisher.emit(event)
    await publisher.aclose(within)
    return publisher.pending + publisher.dropped


@tools_app.command("pending")
def pending(nats_url: NatsUrl = None, data_dir: DataDir = None) -> None:
    """List the definitions that drifted and wait for approval (quarantined, or flagged in warn mode)."""
    from rich.table import Table

    from libs.common.supply_chain.pin_store import pending as pending_records
    from libs.common.supply_chain.pin_store import read_records

    async def work(_nc: NATS, kv: KeyValue) -> int:
        waiting = pending_records((await read_records(kv)).values())
        out = console()
        if not waiting:
            out.print("nothing waits for approval")
            return 0
        table = Table("definition", "kind", "why", "pending", "approved", "seen")
        for record in waiting:
            assert record.pending is not None
            why: str = record.pending_reason or "changed"
            if record.renamed_from:
                why += f" (from {record.renamed_from})"
            table.add_row(
                escape(f"{record.server}/{record.name}"),
                record.kind.replace("_", " "),
                escape(why),
                record.pending.sha256[:12],
                record.approved.sha256[:12] if record.approved else "-",
                _ago(record.pending.seen_at),
            )
        out.print(table)
        cli = escape(cli_command())
        out.print(f"see `{cli} tools diff SERVER/NAME`, then `{cli} tools approve|reject SERVER/NAME --sha HASH`")
        return len(waiting)

    run_on_pins(nats_url, data_dir, work)


@tools_app.command("diff")
def diff(target: Target, nats_url: NatsUrl = None, data_dir: DataDir = None) -> None:
    """Show what changed between the approved definition and the one waiting, field by field."""
    from libs.common.supply_chain.pin_store import diff_text, find

    server, name = _target(target)

    async def work(_nc: NATS, kv: KeyValue) -> None:
        print(diff_text((await find(kv, server, name)).record))

    run_on_pins(nats_url, data_dir, work)


def _decide(target: str, decision: str, sha: str | None, nats_url: str | None, data_dir: Path | None) -> None:
    from libs.common.supply_chain.pin_store import decide_pending

    server, name = _target(target)
    by = actor()

    async def work(nc: NATS, kv: KeyValue) -> tuple[PinChange, int]:
        change = await decide_pending(kv, server, name, "approve" if decision == "approve" else "reject", by, sha)
        return change, await audited(nc, [change], by)

    change, unaudited = run_on_pins(nats_url, data_dir, work)
    before = change.before.pending.sha256[:12] if change.before and change.before.pending else "?"
    verb = "approved" if decision == "approve" else "rejected"
    console().print(f"[green]{verb}[/] {escape(target)} (definition {before}) as {escape(by)}")
    if unaudited:
        print("warning: the audit service did not take the event of this decision (is it running?)", file=sys.stderr)


@tools_app.command("approve")
def approve(target: Target, sha: Sha = None, nats_url: NatsUrl = None, data_dir: DataDir = None) -> None:
    """Approve the waiting definition: every executor serves it from its next listing (within a moment)."""
    _decide(target, "approve", sha, nats_url, data_dir)


@tools_app.command("reject")
def reject(target: Target, sha: Sha = None, nats_url: NatsUrl = None, data_dir: DataDir = None) -> None:
    """Reject the waiting definition: it stays quarantined, and is not asked about again while listed so."""
    _decide(target, "reject", sha, nats_url, data_dir)


def _target(target: str) -> tuple[str, str]:
    from libs.common.contracts.pins import PinError
    from libs.common.supply_chain.pin_store import parse_target

    try:
        return parse_target(target)
    except PinError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None


def _ago(ts: float) -> str:
    import time

    seconds = max(0, int(time.time() - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"
