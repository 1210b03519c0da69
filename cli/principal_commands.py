"""`bastion principals|roles|whoami ...`.

Who may use the admin API (people and automation), their API tokens and their roles (docs/admin-api.md).
A token is printed once, by the command that made it.

A role is given as `ROLE`, `ROLE@team:ID` or `ROLE@customer:ID` (a key manager of one team).

(No `from __future__ import annotations`: typer reads the annotations of the signatures that
`command` assembles, and they must be real objects.)
"""

import time
from typing import Annotated, Any

import typer
from rich.markup import escape

from .admin_base import Json, command, group, out, print_json, print_listing, print_secret, removal_command, usage
from .admin_client import AdminClient, AdminFailure

__all__ = ["parse_role", "principals_app", "roles_app", "whoami"]

principals_app = group("Admin principals (people and automation), their roles and API tokens.")
roles_app = group("Roles: the built-in ones and custom sets of permissions.")

_Principal = Annotated[str, typer.Argument(help="The principal's name.")]
_Token = Annotated[str, typer.Argument(help="The token's id or a prefix of it.")]
_Roles = Annotated[
    list[str] | None,
    typer.Option("--role", "-r", help="ROLE, ROLE@team:ID or ROLE@customer:ID; repeatable."),
]


def parse_role(text: str) -> dict[str, Any]:
    """`key_manager@team:payments` -> a role binding body."""
    role, at, scope = text.partition("@")
    if not at:
        return {"role": role}
    kind, colon, entity = scope.partition(":")
    if not colon or kind not in ("team", "customer") or not entity:
        raise usage(f"--role {text!r}: expected ROLE, ROLE@team:ID or ROLE@customer:ID")
    return {"role": role, f"{kind}_id": entity}


def _role_labels(bindings: list[dict[str, Any]]) -> str:
    labels = []
    for b in bindings:
        scope = (
            f"@team:{b['team_id']}"
            if b.get("team_id")
            else f"@customer:{b['customer_id']}"
            if b.get("customer_id")
            else ""
        )
        labels.append(b["role"] + scope)
    return ", ".join(labels) or "-"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _print_token(created: dict[str, Any], verb: str) -> None:
    token = created["token"]
    out.print(
        f"[green]{verb}[/] API token {escape(token['label'] or '-')!r} of {escape(token['principal'])!r} "
        f"[dim](id {token['id'][:12]}, expires {_when(token['expires_at'])})[/]"
    )
    print_secret("token", created["secret"])


@command(principals_app, "create")
def principals_create(
    api: AdminClient,
    name: Annotated[str, typer.Argument(help="alice@example.com, ci-bot: lower case.")],
    role: _Roles = None,
    person: Annotated[
        bool, typer.Option("--person/--automation", help="A person signs in; automation uses tokens.")
    ] = False,
    user: Annotated[str | None, typer.Option(help="A person's Bastion user (who they sign in as).")] = None,
    token: Annotated[bool, typer.Option("--token", help="Also issue an API token (printed once).")] = False,
    days: Annotated[int | None, typer.Option("--days", min=1, max=366, help="The token's lifetime.")] = None,
    as_json: Json = False,
) -> None:
    """Create a principal (with the bootstrap token: the first owner)."""
    body: dict[str, Any] = {
        "name": name,
        "kind": "person" if person else "automation",
        "user_id": user,
        "roles": [parse_role(r) for r in role or []],
    }
    if token:
        body["token"] = {"label": "cli", "expires_in_days": days}
    created = api.post("/principals", body)
    if as_json:
        return print_json(created)
    principal = created["principal"]
    out.print(
        f"[green]created[/] {principal['kind']} {escape(name)!r} [dim]({escape(_role_labels(principal['roles']))})[/]"
    )
    if created.get("token"):
        _print_token(created["token"], "issued")


@command(principals_app, "list")
def principals_list(api: AdminClient, as_json: Json = False) -> None:
    """List principals (never their tokens)."""
    columns = ("name", "kind", "user", "roles", "status")
    print_listing(api.get("/principals"), as_json, columns, _principal_row, "principal")


def _principal_row(p: dict[str, Any]) -> tuple[str, ...]:
    status = "[red]disabled[/]" if p["disabled"] else "[green]active[/]"
    return escape(p["name"]), p["kind"], escape(p["user_id"] or "-"), escape(_role_labels(p["roles"])), status


@command(principals_app, "update")
def principals_update(
    api: AdminClient,
    name: _Principal,
    role: _Roles = None,
    user: Annotated[str | None, typer.Option(help="Link the person to this Bastion user.")] = None,
    disable: Annotated[
        bool | None, typer.Option("--disable/--enable", help="Refuse (or accept again) its tokens and sessions.")
    ] = None,
) -> None:
    """Change a principal's roles (--role replaces them all), its user, or disable it."""
    body: dict[str, Any] = {}
    if role is not None:
        body["roles"] = [parse_role(r) for r in role]
    if user is not None:
        body["user_id"] = user
    if disable is not None:
        body["disabled"] = disable
    if not body:
        raise usage("nothing to change: give --role, --user, --disable or --enable")
    updated = api.patch(f"/principals/{name}", body)
    out.print(f"[green]updated[/] {escape(name)!r} [dim]({escape(_role_labels(updated['roles']))})[/]")


@command(principals_app, "delete")
def principals_delete(api: AdminClient, name: _Principal) -> None:
    """Delete a principal with its API tokens and sessions."""
    api.delete(f"/principals/{name}")
    out.print(f"[green]deleted[/] {escape(name)!r}")


@command(principals_app, "tokens")
def principals_tokens(api: AdminClient, name: _Principal, as_json: Json = False) -> None:
    """List a principal's API tokens (ids, never the tokens)."""
    tokens = api.get(f"/principals/{name}/tokens")
    columns = ("id", "label", "created", "expires", "status")
    print_listing(tokens, as_json, columns, _token_row, "token", of=f" of {escape(name)}")


def _token_row(t: dict[str, Any]) -> tuple[str, ...]:
    status = (
        "[red]revoked[/]"
        if t["revoked"]
        else "[yellow]expired[/]"
        if t["expires_at"] < time.time()
        else "[green]active[/]"
    )
    return t["id"][:12], escape(t["label"] or "-"), _when(t["created_at"]), _when(t["expires_at"]), status


def _token_id(api: AdminClient, name: str, ref: str) -> str:
    matches = [str(t["id"]) for t in api.get(f"/principals/{name}/tokens") if t["id"].startswith(ref)]
    if len(matches) != 1:
        raise AdminFailure(f"{ref!r} matches {len(matches)} token(s) of {name!r}; give more of the id")
    return matches[0]


@command(principals_app, "issue-token")
def principals_issue_token(
    api: AdminClient,
    name: _Principal,
    label: Annotated[str, typer.Option(help="What it is for.")] = "",
    days: Annotated[int | None, typer.Option("--days", min=1, max=366, help="Lifetime (default 90).")] = None,
) -> None:
    """Issue an API token for a principal (printed once)."""
    _print_token(api.post(f"/principals/{name}/tokens", {"label": label, "expires_in_days": days}), "issued")


@command(principals_app, "rotate-token")
def principals_rotate_token(
    api: AdminClient,
    name: _Principal,
    token: _Token,
) -> None:
    """Replace a token by a new one (printed once) and revoke it."""
    _print_token(api.post(f"/principals/{name}/tokens/{_token_id(api, name, token)}/rotate"), "rotated")


@command(principals_app, "revoke-token")
def principals_revoke_token(
    api: AdminClient,
    name: _Principal,
    token: _Token,
) -> None:
    """Revoke a token: refused at once."""
    token_id = _token_id(api, name, token)
    api.post(f"/principals/{name}/tokens/{token_id}/revoke")
    out.print(f"[green]revoked[/] token {token_id[:12]} of {escape(name)!r}")


@command(roles_app, "list")
def roles_list(api: AdminClient, as_json: Json = False) -> None:
    """List the roles and their permissions."""
    print_listing(api.get("/roles"), as_json, ("role", "permissions", "about"), _role_row, "role")


def _role_row(r: dict[str, Any]) -> tuple[str, ...]:
    name = escape(r["name"]) + ("" if r["builtin"] else " [dim](custom)[/]")
    return name, escape(", ".join(r["permissions"])), escape(r["description"])


@command(roles_app, "create")
def roles_create(
    api: AdminClient,
    name: Annotated[str, typer.Argument()],
    permission: Annotated[list[str], typer.Option("--permission", "-p", help="A permission; repeatable.")],
    description: Annotated[str, typer.Option(help="What the role is for.")] = "",
) -> None:
    """Create a custom role from permissions (`bastion roles permissions` lists them)."""
    api.post("/roles", {"name": name, "description": description, "permissions": permission})
    out.print(f"[green]created[/] role {escape(name)!r}: {escape(', '.join(permission))}")


removal_command(roles_app, "delete", "/roles", "role", "Delete a custom role no principal holds.")


@command(roles_app, "permissions")
def roles_permissions(api: AdminClient, as_json: Json = False) -> None:
    """List every permission a role may hold."""
    print_listing(api.get("/permissions"), as_json, ("permission", "opens"), _permission_row, "permission")


def _permission_row(p: dict[str, Any]) -> tuple[str, ...]:
    return p["name"] + (" [dim](scopable)[/]" if p["scopable"] else ""), escape(p["description"])


def whoami(api: AdminClient, as_json: Json = False) -> None:
    """Who the admin token belongs to, and what it may do."""
    me = api.get("/me")
    if as_json:
        return print_json(me)
    out.print(
        f"[bold]{escape(me['principal'])}[/] ({me['kind']}, via {me['via']}): {escape(_role_labels(me['roles']))}"
    )
    out.print(f"permissions: {escape(', '.join(me['permissions']) or '-')}", highlight=False)
    for permission, scopes in me["scoped"].items():
        out.print(f"  {permission} for {escape(', '.join(scopes))} only", highlight=False)
