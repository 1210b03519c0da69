"""`bastion keys|groups|servers|llm-providers|customers|teams|users|principals|roles|whoami ...`.

The admin API from a terminal.

Each command is one or two HTTP calls (`admin_client`) and a rich table or a line of text; `--json`
prints the API's answer as is, for scripts (`admin_base`). One module per kind of record:
`key_commands`, `entity_commands` (groups, customers, teams, users), `server_commands` (servers,
LLM providers), `principal_commands` (who may use the admin API).
"""

from __future__ import annotations

import typer

from .admin_base import command
from .entity_commands import customers_app, groups_app, teams_app, users_app
from .key_commands import keys_app
from .principal_commands import principals_app, roles_app, whoami
from .registry_commands import servers_search  # noqa: F401 - registers `servers search|updates|update`
from .server_commands import providers_app, servers_app

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the admin command groups to the `bastion` app."""
    for name, group in (
        ("keys", keys_app),
        ("groups", groups_app),
        ("servers", servers_app),
        ("llm-providers", providers_app),
        ("customers", customers_app),
        ("teams", teams_app),
        ("users", users_app),
        ("principals", principals_app),
        ("roles", roles_app),
    ):
        app.add_typer(group, name=name)
    command(app, "whoami")(whoami)
