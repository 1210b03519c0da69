"""`bastion approvals list|show|approve|deny`.

A person decides on tool calls a policy parked (docs/approvals.md), through the admin API as the
principal whose API token they give (`--token`, else `BASTION_TOKEN`): the API judges who they are (the
permission, their tenant, whether the call is their own) and audits the decision under their name.
Without a token the commands refuse: they never act with the stack owner's credentials, nor take the
decider's name from the environment.

`bastion policy check FILE`: compile a Cedar policy file and try it on a sample call, without a stack.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.markup import escape

from .terminal import FlagsGroup, console

if TYPE_CHECKING:
    from .admin_client import AdminClient

__all__ = ["approvals_app", "policy_app", "register"]

approvals_app = typer.Typer(
    help="Tool calls a policy parked for a person: list, show (with arguments), approve, deny.",
    no_args_is_help=True,
    cls=FlagsGroup,
)
policy_app = typer.Typer(help="Cedar policies (docs/policy.md).", no_args_is_help=True, cls=FlagsGroup)

ApprovalId = Annotated[str, typer.Argument(help="The approval's id (ap_...), as `list` shows it.")]
Reason = Annotated[str, typer.Option("--reason", "-r", help="Why: the agent and the audit trail read it.")]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Your own API token (default: BASTION_TOKEN): the command acts as its principal. Required.",
        show_default=False,
    ),
]
AdminUrl = Annotated[
    str | None, typer.Option("--admin-url", help="The admin API (default: BASTION_ADMIN_URL, then stack.json).")
]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Where stack.json is (default: .bastion).")]

NO_TOKEN = (
    "approvals are decided by a person: pass your API token with --token or set BASTION_TOKEN "
    "(the stack's own credentials are never used)"
)


def _as_principal(
    token: str | None, admin_url: str | None, data_dir: Path | None, work: Callable[[AdminClient], Any]
) -> Any:
    """`work` over the admin API as the principal of `token`; a failure printed as one line."""
    from .admin_client import AdminClient, AdminFailure, find_admin

    given = token or os.environ.get("BASTION_TOKEN", "").strip()
    if not given:
        print(f"error: {NO_TOKEN}", file=sys.stderr)
        raise typer.Exit(2)
    try:
        # the token passed on: `find_admin` takes it first, never the stack's
        with AdminClient(find_admin(admin_url, given, data_dir or Path(".bastion"))) as api:
            return work(api)
    except AdminFailure as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(exc.exit_code) from None


def _state(record: dict[str, Any]) -> str:
    return str(record.get("state", ""))


@approvals_app.command("list")
def list_approvals(
    every: Annotated[bool, typer.Option("--all", help="Decided and expired ones too.")] = False,
    token: Token = None,
    admin_url: AdminUrl = None,
    data_dir: DataDir = None,
) -> None:
    """The calls waiting for a person (newest first), of the tenants you decide for."""
    from rich.table import Table

    params = {} if every else {"state": "pending"}
    records = _as_principal(token, admin_url, data_dir, lambda api: api.get("/approvals", **params))
    out = console()
    if not records:
        out.print("nothing waits for approval")
        return
    table = Table("approval", "state", "key", "tool", "policy", "approvers", "expires in")
    for r in records:
        left = max(0, int(r["expires_at"] - time.time()))
        names = (escape(r["key_name"]), escape(r["name"]), escape(r["policy"]), escape(r["approvers"]))
        table.add_row(r["id"], _state(r), *names, f"{left}s")
    out.print(table)


@approvals_app.command("show")
def show(approval_id: ApprovalId, token: Token = None, admin_url: AdminUrl = None, data_dir: DataDir = None) -> None:
    """One parked call: who, which tool, which policy and why, the arguments that would run."""
    record = _as_principal(token, admin_url, data_dir, lambda api: api.get(f"/approvals/{approval_id}"))
    arguments = record.get("arguments")
    out = console()
    for label, value in (
        ("approval", record["id"]),
        ("state", _state(record)),
        ("key", f"{record['key_name']} (user {record.get('user_id') or '-'})"),
        ("tool", f"{record['name']} ({record['server']}/{record['tool']})"),
        ("policy", f"{record['policy']}: {record.get('reason') or ''}"),
        ("approvers", record["approvers"]),
        ("arguments", json.dumps(arguments, sort_keys=True) if arguments is not None else "(sealed)"),
        ("decided", f"{record['decided_by']}: {record['decision_reason']}" if record.get("decided_by") else "-"),
    ):
        out.print(f"{label:>10}  {escape(str(value))}")


def _decision(what: Literal["approve", "deny"], summary: str) -> Callable[..., None]:
    """The command that decides a parked call one way, `summary` its help."""

    def decide(
        approval_id: ApprovalId,
        reason: Reason,
        token: Token = None,
        admin_url: AdminUrl = None,
        data_dir: DataDir = None,
    ) -> None:
        path = f"/approvals/{approval_id}/{what}"
        after = _as_principal(token, admin_url, data_dir, lambda api: api.post(path, {"reason": reason}))
        console().print(
            f"[green]{after['state']}[/] {after['id']} ({escape(after['name'])}) as {escape(after['decided_by'])}"
        )

    decide.__doc__ = summary
    return decide


approvals_app.command("approve")(
    _decision(
        "approve",
        "Approve: the agent's next call (the same arguments, or naming the approval) runs the stored arguments, once.",
    )
)
approvals_app.command("deny")(_decision("deny", "Deny: the call never runs; the agent is told who denied it and why."))


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
    """Compile the policies (the line of the first problem) and, given --key and --tool.

    Say what they decide for that call: allow, deny or approval, and which policy decided."""
    from libs.common.cedar.cedar_eval import Principal, call_context, evaluate
    from libs.common.cedar.cedar_policies import PolicyProblem, compile_policies

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
