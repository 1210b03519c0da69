"""`/admin/v1/config/plan` and `/admin/v1/config/apply`.

A configuration file (the YAML `bastion config apply` takes, the console's export) imported through the
admin API (`config_import`). Each section the file fills needs its write permission; an import upserts
and never deletes.

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

import logging

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from libs.common.contracts.command_servers import WHY_PROVIDER_ENV

from ..roles import AUTHENTICATED
from .command_rights import require_fields
from .config_import import ConfigPlan, Importer
from .identity import current
from .route_table import Route, register
from .store import AdminStore

__all__ = ["MAX_CONFIG_CHARS", "config_routes"]

log = logging.getLogger(__name__)

MAX_CONFIG_CHARS = 512 * 1024


class ConfigText(BaseModel):
    model_config = ConfigDict(extra="forbid")
    yaml: str = Field(
        max_length=MAX_CONFIG_CHARS,
        description="the file's text: YAML or JSON, as `bastion config apply` reads it (aliases may not expand"
        " past 100,000 values)",
    )


async def planned(store: AdminStore, body: ConfigText, apply: bool) -> ConfigPlan:
    identity = current()
    importer = Importer(store, identity)
    config, keys, ignored = importer.read(body.yaml)  # 403 for a section it may not write, first
    sections, writes, owner_only, providers = await importer.plan(config, keys)
    plan = ConfigPlan(
        sections=sections, ignored=ignored, applied=apply, needs_command=owner_only, providers_need_command=providers
    )
    if apply:
        for name, changed in owner_only.items():  # a plan says so; an apply refuses
            require_fields(identity, f"import: mcpServers.{name}", changed)
        for name, changed in providers.items():
            require_fields(identity, f"import: llm.providers.{name}", changed, WHY_PROVIDER_ENV)
        await importer.write(writes)
        if store.changes is not None:  # one event for the import beside one for each record written
            store.changes.record("config", "import", "config", None, plan)
        log.info("admin: %s imported a configuration (%d records written)", identity.principal, len(writes))
    return plan


async def plan_config(store: AdminStore, body: ConfigText) -> ConfigPlan:
    """What importing the file would add and change, per kind, without writing anything.

    Needs the write permission of every section the file fills (servers:write for `mcpServers`,
    keys:write held everywhere for `keys`, groups:write, directory:write for customers, teams and users,
    providers:write for `llm.providers`). `needs_command` names the servers whose owner-only fields (what
    a stdio server runs) the file sets: applying those needs `servers:command`, the owner's."""
    return await planned(store, body, apply=False)


async def apply_config(store: AdminStore, body: ConfigText) -> ConfigPlan:
    """Import the file: add and change what it names (nothing it leaves out is deleted), after checking all of it.

    Nothing is expanded from the admin service's environment: a `${VAR}` or a key's `key_env` is a 422
    naming where it is (only the owner's file on disk, read by `bastion config apply`, expands). `***`
    keeps a stored secret while its destination stays (else 422 `secret_unbound`). Every record written
    is an admin audit event, and so is the import. A file that adds or changes a stdio server's command
    (`needs_command` in the plan) or a provider's `api_key_env` (`providers_need_command`) is refused
    (403) without `servers:command`, and nothing of it is written."""
    return await planned(store, body, apply=True)


# each section the file fills is checked against its own write permission (config_import.SECTIONS)
CONFIG_ROUTES = (
    Route("POST", "/config/plan", AUTHENTICATED, plan_config, errors=(409, 422)),
    Route("POST", "/config/apply", AUTHENTICATED, apply_config, errors=(409, 422)),
)


def config_routes(router: APIRouter, store: AdminStore) -> None:
    register(router, CONFIG_ROUTES, "config", store)
