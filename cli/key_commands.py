"""`bastion keys create|list|show|revoke|rotate|delete`.

A key secret is printed only by `create` and `rotate`, once, on stdout.

(No `from __future__ import annotations`: typer reads the annotations of the signatures that
`command` assembles, and they must be real objects.)
"""

import re
import time
from typing import Annotated, Any

import typer
from rich.markup import escape

from .admin_base import Json, ToolGroups, command, group, limits, out, print_json, print_listing, print_secret, usage
from .admin_client import AdminClient, AdminFailure
from .admin_values import parse_budget, parse_rate

__all__ = ["keys_app"]

keys_app = group("Virtual keys: create, list, revoke, rotate (via the admin API).")


def _resolve_key(api: AdminClient, ref: str, *, revoked_too: bool = False) -> dict[str, Any]:
    """A key by full id, unique id prefix (6+ hex characters).

    Or the name of an active key (or, with `revoked_too` and no active key of that name, of a revoked
    one)."""
    keys: list[dict[str, Any]] = api.get("/keys")
    if re.fullmatch(r"[0-9a-f]{6,64}", ref):
        matches = [k for k in keys if k["id"].startswith(ref)]
    else:
        matches = [k for k in keys if k["name"] == ref and not k["revoked"]]
        if not matches and revoked_too:
            matches = [k for k in keys if k["name"] == ref]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise AdminFailure(f"no key matches {ref!r} (give its id, an id prefix, or the name of an active key)")
    raise AdminFailure(f"{ref!r} matches {len(matches)} keys; give more of the id")


def _owner(key: dict[str, Any]) -> str:
    return ", ".join(f"{kind} {key[f'{kind}_id']}" for kind in ("user", "team", "customer") if key[f"{kind}_id"])


def _status(key: dict[str, Any]) -> str:
    status = "[red]revoked[/]" if key["revoked"] else "[green]active[/]"
    return status + (f" [dim]({escape(key['source'])})[/]" if key.get("source") else "")


def _agent(tools: list[str] | None, depth: int | None) -> dict[str, Any] | None:
    if not tools:
        return None
    return {"tools_to_auto_execute": tools, **({"max_depth": depth} if depth is not None else {})}


def _mode(key: dict[str, Any]) -> str:
    """`code mode`, `agent: echo__* (depth 10)`, both, or `-`."""
    parts = ["code mode"] if key.get("code_mode") else []
    if agent := key.get("agent"):
        parts.append(f"agent: {', '.join(agent['tools_to_auto_execute'])} (depth {agent['max_depth']})")
    return "; ".join(parts) or "-"


def _print_secret(created: dict[str, Any], verb: str) -> None:
    key = created["key"]
    out.print(f"[green]{verb}[/] key {escape(key['name'])!r} [dim](id {key['id'][:12]})[/]")
    print_secret("secret", created["secret"])


@command(keys_app, "create")
def keys_create(
    api: AdminClient,
    name: Annotated[str, typer.Argument(help="A unique name (shown in the audit trail).")],
    grant: Annotated[list[str] | None, typer.Option("--grant", "-g", help="server/tool pattern; repeatable.")] = None,
    group: ToolGroups = None,
    user: Annotated[str | None, typer.Option(help="User id the key belongs to.")] = None,
    team: Annotated[str | None, typer.Option(help="Team id.")] = None,
    customer: Annotated[str | None, typer.Option(help="Customer id.")] = None,
    budget: Annotated[str | None, typer.Option(help="USD or USD/PERIOD, e.g. 25/month.")] = None,
    rate_limit: Annotated[str | None, typer.Option(help="REQUESTS or REQUESTS/WINDOW, e.g. 60/minute.")] = None,
    code_mode: Annotated[
        bool, typer.Option("--code-mode", help="Offer the Code Mode meta-tools instead of the catalog.")
    ] = False,
    agent: Annotated[
        list[str] | None,
        typer.Option(
            "--agent",
            help="Agent mode on /v1/chat/completions: a tool Bastion runs itself (server__tool, *); repeatable.",
        ),
    ] = None,
    agent_depth: Annotated[
        int | None, typer.Option("--agent-depth", min=1, max=100, help="Model round trips at most (default 10).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Create a key; its secret is printed once."""
    if agent_depth is not None and not agent:
        raise usage("--agent-depth needs --agent (the tools Bastion runs itself)")
    body = {
        "name": name,
        "grants": grant or [],
        "groups": group or [],
        "user_id": user,
        "team_id": team,
        "customer_id": customer,
        "budget": parse_budget(budget),
        "rate_limit": parse_rate(rate_limit),
        "code_mode": code_mode,
        "agent": _agent(agent, agent_depth),
    }
    created = api.post("/keys", body)
    if as_json:
        return print_json(created)
    _print_secret(created, "created")


@command(keys_app, "list")
def keys_list(api: AdminClient, as_json: Json = False) -> None:
    """List keys (never their secrets)."""
    columns = ("id", "name", "grants", "groups", "belongs to", "limits", "mode", "status")
    print_listing(api.get("/keys"), as_json, columns, _key_row, "key")


def _key_row(k: dict[str, Any]) -> tuple[str, ...]:
    return (
        k["id"][:12],
        escape(k["name"]),
        escape(", ".join(k["grants"]) or "-"),
        escape(", ".join(k["groups"]) or "-"),
        escape(_owner(k) or "-"),
        limits(k) or "-",
        escape(_mode(k)),
        _status(k),
    )


@command(keys_app, "show")
def keys_show(
    api: AdminClient, key: Annotated[str, typer.Argument(help="Id, id prefix, or name.")], as_json: Json = False
) -> None:
    """Show one key in full (never its secret)."""
    found = _resolve_key(api, key, revoked_too=True)
    if as_json:
        return print_json(found)
    created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(found["created_at"]))
    rows = [
        ("name", escape(found["name"])),
        ("id", found["id"]),
        ("status", _status(found)),
        ("grants", escape(", ".join(found["grants"]) or "none (deny by default)")),
        ("groups", escape(", ".join(found["groups"]) or "-")),
        ("belongs to", escape(_owner(found) or "-")),
        ("limits", limits(found) or "-"),
        ("mode", escape(_mode(found))),
        ("created", created),
    ]
    for label, value in rows:
        out.print(f"[bold]{label:<11}[/]{value}", highlight=False)


@command(keys_app, "revoke")
def keys_revoke(api: AdminClient, key: Annotated[str, typer.Argument(help="Id, id prefix, or name.")]) -> None:
    """Revoke a key: every gateway replica refuses it within moments."""
    found = _resolve_key(api, key, revoked_too=True)
    if found["revoked"]:
        out.print(f"key {escape(found['name'])!r} [dim](id {found['id'][:12]})[/] is already revoked: nothing to do")
        return
    api.post(f"/keys/{found['id']}/revoke")
    out.print(f"[green]revoked[/] key {escape(found['name'])!r} [dim](id {found['id'][:12]})[/]")


@command(keys_app, "rotate")
def keys_rotate(
    api: AdminClient, key: Annotated[str, typer.Argument(help="Id, id prefix, or name.")], as_json: Json = False
) -> None:
    """Issue a new secret for a key (same name, grants and limits) and revoke the old one."""
    found = _resolve_key(api, key)
    created = api.post(f"/keys/{found['id']}/rotate")
    if as_json:
        return print_json(created)
    _print_secret(created, "rotated")


@command(keys_app, "delete")
def keys_delete(api: AdminClient, key: Annotated[str, typer.Argument(help="Id, id prefix, or name.")]) -> None:
    """Delete a key's record (revoking keeps it listed)."""
    found = _resolve_key(api, key)
    api.delete(f"/keys/{found['id']}")
    out.print(f"[green]deleted[/] key {escape(found['name'])!r} [dim](id {found['id'][:12]})[/]")
