"""`bastion servers add --registry REGISTRY SERVER[@VERSION]`.

A server found in an MCP Registry, imported through the admin API pinned at a version (docs/registry.md).
Apart from the registry's own commands (`registry_commands`), which register on `servers_app`, so that
`servers add` needs no late import.
"""

from typing import Any

from rich.markup import escape

from .admin_base import out, usage
from .admin_client import AdminClient

__all__ = ["import_server"]


def import_server(
    api: AdminClient,
    registry: str,
    reference: str,
    local: str | None,
    choice: str | None,
    values: dict[str, str],
    other_flags: bool,
) -> None:
    """`servers add --registry REGISTRY SERVER[@VERSION]`: the admin API's import, its answer printed."""
    if other_flags:
        raise usage("--registry imports the server the registry describes: no command, --url, --openapi or --entry")
    server, _, version = reference.partition("@")
    body: dict[str, Any] = {"registry": registry, "server": server, "version": version or "latest", "values": values}
    if local:
        body["name"] = local
    if choice:
        body["choice"] = choice
    added = api.post("/servers/import", body)
    origin = added["config"]["registry"]
    out.print(
        f"[green]added[/] server {escape(added['name'])!r} from {escape(registry)} "
        f"({escape(origin['server'])} {escape(origin['version'])}, {escape(origin['choice'])}) "
        "[dim](executors connect to it now)[/]"
    )
