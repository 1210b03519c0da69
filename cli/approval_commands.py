"""`bastion approvals list|show|approve|deny`: a person decides on tool calls a policy parked
(docs/approvals.md), over the admin role's NATS connection to KV `bastion_approvals`, as `bastion
tools` does for pins; the logic is `libs.common.approvals`', shared with the admin API. Each decision
is an admin audit event naming who (the CLI's principal: `BASTION_PRINCIPAL`, else `cli:<user>@<host>`).

`bastion policy check FILE`: compile a Cedar policy file and try it on a sample call, without a stack.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.markup import escape

from .terminal import FlagsGroup, console
from .tool_commands import DataDir, NatsUrl, actor, audited_events, run_on_pins

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.js.kv import KeyValue

    from libs.common.approvals import ApprovalRecord

__all__ = ["approvals_app", "policy_app", "register"]

approvals_app = typer.Typer(
    help="Tool calls a policy parked for a person: list, show (with arguments), approve, deny.",
    no_args_is_help=True,
    cls=FlagsGroup,
)
policy_app = typer.Typer(help="Cedar policies (docs/policy.md).", no_args_is_help=True, cls=FlagsGroup)

ApprovalId = Annotated[str, typer.Argument(help="The approval's id (ap_...), as `list` shows it.")]
Reason = Annotated[str, typer.Option("--reason", "-r", help="Why: the agent and the audit trail read it.")]


def _bucket(nc: NATS) -> Any:
    from libs.common import subjects
    from libs.common.nats import kv_bucket

    return kv_bucket(nc.jetstream(), subjects.KV_APPROVALS)


def _arguments(record: ApprovalRecord, data_dir: Path | None) -> str:
    from libs.common.sealing import Sealer, SealingError

    try:
        call = json.loads(Sealer(_secrets_key(data_dir)).open_value(record.call_sealed))
    except (SealingError, ValueError):
        return "(sealed: set BASTION_SECRETS_KEY to the stack's key to see them)"
    return json.dumps(call.get("arguments"), sort_keys=True)


def _secrets_key(data_dir: Path | None) -> str:
    """The stack's sealing key: `BASTION_SECRETS_KEY`, else the one `bastion up` keeps in its credentials."""
    from .credentials import CREDENTIALS_DIR

    if key := os.environ.get("BASTION_SECRETS_KEY", "").strip():
        return key
    path = (data_dir or Path(".bastion")) / CREDENTIALS_DIR / "secrets.key"
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _state(record: ApprovalRecord) -> str:
    return "expired" if record.expired() else record.state


@approvals_app.command("list")
def list_approvals(
    every: Annotated[bool, typer.Option("--all", help="Decided and expired ones too.")] = False,
    nats_url: NatsUrl = None,
    data_dir: DataDir = None,
) -> None:
    """The calls waiting for a person (newest first)."""
    from rich.table import Table

    from libs.common import approvals

    async def work(nc: NATS, _pins: KeyValue) -> list[ApprovalRecord]:
        return await approvals.list_records(await _bucket(nc))

    records = [r for r in run_on_pins(nats_url, data_dir, work) if every or _state(r) == "pending"]
    out = console()
    if not records:
        out.print("nothing waits for approval")
        return
    table = Table("approval", "state", "key", "tool", "policy", "approvers", "expires in")
    for r in records:
        left = max(0, int(r.expires_at - time.time()))
        names = (escape(r.key_name), escape(r.name), escape(r.policy), escape(r.approvers))
        table.add_row(r.id, _state(r), *names, f"{left}s")
    out.print(table)


@approvals_app.command("show")
def show(approval_id: ApprovalId, nats_url: NatsUrl = None, data_dir: DataDir = None) -> None:
    """One parked call: who, which tool, which policy and why, the arguments that would run."""
    from libs.common import approvals

    async def work(nc: NATS, _pins: KeyValue) -> ApprovalRecord | None:
        found = await approvals.read(await _bucket(nc), approval_id)
        return found[0] if found is not None else None

    record = run_on_pins(nats_url, data_dir, work)
    if record is None:
        print(f"error: there is no approval {approval_id!r}", file=sys.stderr)
        raise typer.Exit(1)
    out = console()
    for label, value in (
        ("approval", record.id),
        ("state", _state(record)),
        ("key", f"{record.key_name} (user {record.user_id or '-'})"),
        ("tool", f"{record.name} ({record.server}/{record.tool})"),
        ("policy", f"{record.policy}: {record.reason or ''}"),
        ("approvers", record.approvers),
        ("arguments", _arguments(record, data_dir)),
        ("decided", f"{record.decided_by}: {record.decision_reason}" if record.decided_by else "-"),
    ):
        out.print(f"{label:>10}  {escape(value)}")


def _decide(
    approval_id: str, what: Literal["approve", "deny"], reason: str, nats_url: str | None, data_dir: Path | None
) -> None:
    from libs.common import approvals
    from libs.common.approvals import ApprovalConflict, OwnCall

    by = actor()

    async def work(nc: NATS, _pins: KeyValue) -> tuple[ApprovalRecord, int] | str:
        try:
            before, after = await approvals.decide(await _bucket(nc), approval_id, what, by, reason)
        except KeyError:
            return f"there is no approval {approval_id!r}"
        except (OwnCall, ApprovalConflict) as exc:
            return str(exc)
        return after, await audited_events(nc, [approvals.approval_audit_event(before, after, by, what)])

    done = run_on_pins(nats_url, data_dir, work)
    if isinstance(done, str):
        print(f"error: {done}", file=sys.stderr)
        raise typer.Exit(1)
    after, unaudited = done
    console().print(f"[green]{after.state}[/] {after.id} ({escape(after.name)}) as {escape(by)}")
    if unaudited:
        print("warning: the audit service did not take the event of this decision (is it running?)", file=sys.stderr)


@approvals_app.command("approve")
def approve(approval_id: ApprovalId, reason: Reason, nats_url: NatsUrl = None, data_dir: DataDir = None) -> None:
    """Approve: the agent's next call naming the approval runs the stored arguments, once."""
    _decide(approval_id, "approve", reason, nats_url, data_dir)


@approvals_app.command("deny")
def deny(approval_id: ApprovalId, reason: Reason, nats_url: NatsUrl = None, data_dir: DataDir = None) -> None:
    """Deny: the call never runs; the agent is told who denied it and why."""
    _decide(approval_id, "deny", reason, nats_url, data_dir)


@policy_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="A file of Cedar policies.")],
    key: Annotated[str | None, typer.Option(help="A sample call's key name (principal.name).")] = None,
    customer: Annotated[str | None, typer.Option(help="... its customer.")] = None,
    team: Annotated[str | None, typer.Option(help="... its team.")] = None,
    user: Annotated[str | None, typer.Option(help="... its user.")] = None,
    tool: Annotated[str | None, typer.Option(help="SERVER/TOOL the sample call calls (the tool's own name).")] = None,
    arguments: Annotated[str, typer.Option(help="The sample call's arguments, as JSON.")] = "{}",
    annotations: Annotated[str, typer.Option(help="The tool's MCP annotations, as JSON.")] = "{}",
    alias: Annotated[
        list[str] | None, typer.Option(help="Another stable name of the tool (its catalog aliases); repeatable.")
    ] = None,
) -> None:
    """Compile the policies (the line of the first problem) and, given --key and --tool, say what
    they decide for that call: allow, deny or approval, and which policy decided."""
    from libs.common.cedar_eval import Principal, call_context, evaluate
    from libs.common.cedar_policies import PolicyProblem, compile_policies

    try:
        compiled = compile_policies(file.read_text())
    except (OSError, PolicyProblem) as exc:
        print(f"error: {file}: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    out = console()
    per_call = [p.id for p in compiled.policies.values() if p.per_call]
    out.print(f"{len(compiled.policies)} policies compile; decided per call: {', '.join(per_call) or 'none'}")
    if key is None or tool is None:
        return
    server, _, name = tool.partition("/")
    try:
        args, notes = json.loads(arguments), json.loads(annotations)
    except ValueError as exc:
        print(f"error: --arguments / --annotations: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    caller, aliases = Principal(key, user, team, customer), tuple(alias or ())
    verdict = evaluate(compiled, compiled.full, caller, (server, name, notes), call_context(args), aliases=aliases)
    why = f": {verdict.reason}" if verdict.reason else ""
    who = f" (approvers: {verdict.approvers})" if verdict.approvers else ""
    out.print(f"{verdict.effect} by policy {escape(verdict.policy)}{escape(why)}{escape(who)}")


def register(app: typer.Typer) -> None:
    """Add `bastion approvals` and `bastion policy` to the app."""
    app.add_typer(approvals_app, name="approvals")
    app.add_typer(policy_app, name="policy")
