"""`bastion servers search`, `servers updates` and `servers update`.

Servers found in an MCP Registry, imported pinned at a version, and newer versions approved
(docs/registry.md).

(No `from __future__ import annotations`: typer reads the annotations of the signatures that
`command` assembles, and they must be real objects.)
"""

from typing import Annotated
from urllib.parse import quote

import typer
from rich.markup import escape
from rich.table import Table

from .admin_base import Json, command, out, print_json
from .admin_client import AdminClient
from .admin_values import parse_pairs
from .server_commands import servers_app

__all__: list[str] = []  # commands only, registered on servers_app


@command(servers_app, "search")
def servers_search(
    api: AdminClient,
    text: Annotated[str, typer.Argument(help="Part of the server's name.")] = "",
    registry: Annotated[str, typer.Option(help="A configured registry (default: official).")] = "official",
    as_json: Json = False,
) -> None:
    """Search a registry's servers (their latest versions) by name."""
    found = api.get(f"/registries/{quote(registry, safe='')}/servers?search={quote(text)}")
    if as_json:
        return print_json(found)
    table = Table("name", "version", "runs as", "description", title=f"{len(found['servers'])} server(s)")
    for item in found["servers"]:
        server = item["server"]
        ways = [f"remote ({r.get('type')})" for r in server.get("remotes") or []]
        ways += [f"{p.get('registryType')} package" for p in server.get("packages") or []]
        table.add_row(
            escape(server["name"]),
            escape(server["version"]),
            escape(", ".join(ways)),
            escape(server.get("description", "")),
        )
    out.print(table)


@command(servers_app, "updates")
def servers_updates(api: AdminClient, as_json: Json = False) -> None:
    """Imported servers whose registry has a newer version: updates waiting for approval."""
    updates = api.get("/registries/updates")
    if as_json:
        return print_json(updates)
    table = Table("name", "registry", "server", "pinned", "latest", title=f"{len(updates)} update(s) pending")
    for u in updates:
        latest = u["latest"] or f"[red]{escape(u.get('error') or '?')}[/]"
        table.add_row(*(escape(u[k]) for k in ("name", "registry", "server", "pinned")), latest)
    out.print(table)


@command(servers_app, "update")
def servers_update(
    api: AdminClient,
    name: Annotated[str, typer.Argument(help="An imported server.")],
    version: Annotated[str, typer.Option(help="The version to move to.")] = "latest",
    value: Annotated[list[str] | None, typer.Option("--value", help="NAME=VALUE a new version asks for.")] = None,
) -> None:
    """Approve an update: move an imported server to a version of its registry entry (its env and headers kept)."""
    body = {"version": version, "values": parse_pairs(value, "--value")}
    moved = api.post(f"/servers/{quote(name, safe='')}/registry-update", body)
    out.print(f"[green]updated[/] server {escape(name)!r} to {escape(moved['config']['registry']['version'])}")
