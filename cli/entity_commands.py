"""`bastion groups|customers|teams|users ...`.

Tool groups and the key hierarchy (customer -> team -> user), and users' passwords for OAuth logins.

(No `from __future__ import annotations`: typer reads the annotations of the signatures that
`command` assembles, and they must be real objects.)
"""

import getpass
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from .admin_base import Json, ToolGroups, command, group, limits, out, print_listing, usage
from .admin_client import AdminClient
from .admin_values import parse_budget, parse_rate

__all__ = ["customers_app", "groups_app", "read_password", "teams_app", "users_app"]

groups_app = group("Tool groups: named bundles of grants.")
customers_app = group("Customers (the top of the key hierarchy).")
teams_app = group("Teams (belong to a customer).")
users_app = group("Users (belong to a team).")

EntityId = Annotated[str, typer.Argument(metavar="ID")]
DisplayName = Annotated[str, typer.Option(help="Display name.")]


@command(groups_app, "create")
def groups_create(
    api: AdminClient,
    group_id: Annotated[str, typer.Argument(metavar="ID", help="Lower-case id, e.g. readers.")],
    tool: Annotated[list[str] | None, typer.Option("--tool", "-t", help="server/tool pattern; repeatable.")] = None,
    description: Annotated[str, typer.Option(help="What the group is for.")] = "",
) -> None:
    """Create a tool group."""
    api.post("/groups", {"id": group_id, "description": description, "tools": tool or []})
    out.print(f"[green]created[/] group {escape(group_id)!r} with {len(tool or [])} tool pattern(s)")


@command(groups_app, "set-tools")
def groups_set_tools(
    api: AdminClient,
    group_id: EntityId,
    tools: Annotated[
        list[str] | None, typer.Argument(help="The group's new server/tool patterns (none: empty).")
    ] = None,
) -> None:
    """Replace a group's tool patterns."""
    api.patch(f"/groups/{group_id}", {"tools": tools or []})
    out.print(f"[green]updated[/] group {escape(group_id)!r}: {escape(', '.join(tools or [])) or 'no tools'}")


@command(groups_app, "list")
def groups_list(api: AdminClient, as_json: Json = False) -> None:
    """List tool groups."""
    print_listing(api.get("/groups"), as_json, ("id", "tools", "description"), _group_row, "group")


def _group_row(g: dict[str, Any]) -> tuple[str, ...]:
    return escape(g["id"]), escape(", ".join(g["tools"]) or "-"), escape(g["description"])


def delete_command(group: typer.Typer, path: str, label: str) -> None:
    def delete(
        api: AdminClient,
        entity_id: EntityId,
        force: Annotated[bool, typer.Option(help="Delete even if keys or others still refer to it.")] = False,
    ) -> None:
        api.delete(f"{path}/{entity_id}", **({"force": "true"} if force else {}))
        out.print(f"[green]deleted[/] {label} {escape(entity_id)!r}")

    # before `command` wraps it: the wrapper takes the help from the docstring it finds
    delete.__doc__ = f"Delete a {label} (refused while something refers to it, unless --force)."
    command(group, "delete")(delete)


@command(customers_app, "create")
def customers_create(
    api: AdminClient,
    customer_id: EntityId,
    name: DisplayName,
    group: ToolGroups = None,
    budget: Annotated[str | None, typer.Option(help="USD or USD/PERIOD, e.g. 500/month.")] = None,
) -> None:
    """Create a customer."""
    api.post("/customers", {"id": customer_id, "name": name, "groups": group or [], "budget": parse_budget(budget)})
    out.print(f"[green]created[/] customer {escape(customer_id)!r}")


@command(teams_app, "create")
def teams_create(
    api: AdminClient,
    team_id: EntityId,
    name: DisplayName,
    customer: Annotated[str | None, typer.Option(help="Customer id.")] = None,
    group: ToolGroups = None,
    budget: Annotated[str | None, typer.Option(help="USD or USD/PERIOD.")] = None,
) -> None:
    """Create a team."""
    body = {"id": team_id, "name": name, "customer_id": customer, "groups": group or [], "budget": parse_budget(budget)}
    api.post("/teams", body)
    out.print(f"[green]created[/] team {escape(team_id)!r}")


@command(users_app, "create")
def users_create(
    api: AdminClient,
    user_id: EntityId,
    name: DisplayName,
    team: Annotated[str | None, typer.Option(help="Team id.")] = None,
    group: ToolGroups = None,
    rate_limit: Annotated[str | None, typer.Option(help="REQUESTS or REQUESTS/WINDOW.")] = None,
    password: Annotated[
        bool,
        typer.Option(
            "--password", help="Also set a password for OAuth logins (asked twice, or one line on standard input)."
        ),
    ] = False,
) -> None:
    """Create a user (with --password, one who can log in through OAuth: docs/oauth.md)."""
    secret = read_password() if password else None  # asked first: a typo must not leave a half-made user
    body = {"id": user_id, "name": name, "team_id": team, "groups": group or [], "rate_limit": parse_rate(rate_limit)}
    api.post("/users", body)
    out.print(f"[green]created[/] user {escape(user_id)!r}")
    if secret is not None:
        _set_password(api, user_id, secret)


@command(users_app, "set-password")
def users_set_password(api: AdminClient, user_id: EntityId) -> None:
    """Set or change a user's password for OAuth logins (asked twice, or one line on standard input)."""
    _set_password(api, user_id, read_password())


def _set_password(api: AdminClient, user_id: str, password: str) -> None:
    api.request("PUT", f"/users/{user_id}/password", {"password": password})
    out.print(f"[green]password set[/] for user {escape(user_id)!r} [dim](only its scrypt hash is kept)[/]")


def read_password() -> str:
    """A new password: typed twice on a terminal (not echoed), else the first line of standard input."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != first:
            raise usage("the two passwords differ")
    else:
        first = sys.stdin.readline().rstrip("\r\n")
    if not first:
        raise usage("no password given")
    return first


def list_command(group: typer.Typer, path: str, label: str, link: str | None) -> None:
    def row(item: dict[str, Any]) -> tuple[str, ...]:
        linked = [escape(item.get(link) or "-")] if link else []
        return (
            escape(item["id"]),
            escape(item["name"]),
            *linked,
            escape(", ".join(item["groups"]) or "-"),
            limits(item) or "-",
        )

    def list_entities(api: AdminClient, as_json: Json = False) -> None:
        columns = ["id", "name", *([link.removesuffix("_id")] if link else []), "groups", "limits"]
        print_listing(api.get(path), as_json, columns, row, label)

    list_entities.__doc__ = f"List {label}s."  # before `command` wraps it, as in `delete_command`
    command(group, "list")(list_entities)


delete_command(groups_app, "/groups", "tool group")
for _group, _path, _label, _link in (
    (customers_app, "/customers", "customer", None),
    (teams_app, "/teams", "team", "customer_id"),
    (users_app, "/users", "user", "team_id"),
):
    list_command(_group, _path, _label, _link)
    delete_command(_group, _path, _label)
