"""`/admin/v1/config/plan` and `/admin/v1/config/apply`: a configuration file (the YAML `bastion config
apply` takes, the console's export) imported through the admin API (`config_import`). Each section the
file fills needs its write permission; an import upserts and never deletes.

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

import logging

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from ..roles import AUTHENTICATED
from .config_import import ConfigPlan, Importer
from .errors import documented, needs
from .identity import current
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


def config_routes(router: APIRouter, store: AdminStore) -> None:
    importer = Importer(store)
    # each section the file fills is checked against its own write permission (config_import.SECTIONS)
    signed_in = needs(AUTHENTICATED)
    refusals = documented(409, 422)

    async def planned(body: ConfigText, apply: bool) -> ConfigPlan:
        identity = current()
        config, keys, ignored = importer.read(body.yaml)
        importer.require(identity, config)
        sections, writes = await importer.plan(config, keys)
        plan = ConfigPlan(sections=sections, ignored=ignored, applied=apply)
        if apply:
            await importer.write(writes)
            if store.changes is not None:  # one event for the import beside one for each record written
                store.changes.record("config", "import", "config", None, plan)
            log.info("admin: %s imported a configuration (%d records written)", identity.principal, len(writes))
        return plan

    @router.post("/config/plan", tags=["config"], responses=refusals, openapi_extra=signed_in)
    async def plan_config(body: ConfigText) -> ConfigPlan:
        """What importing the file would add and change, per kind, without writing anything. Needs the
        write permission of every section the file fills (servers:write for `mcpServers`, keys:write held
        everywhere for `keys`, groups:write, directory:write for customers, teams and users,
        providers:write for `llm.providers`)."""
        return await planned(body, apply=False)

    @router.post("/config/apply", tags=["config"], responses=refusals, openapi_extra=signed_in)
    async def apply_config(body: ConfigText) -> ConfigPlan:
        """Import the file: add and change what it names (nothing it leaves out is deleted), after
        checking all of it. A `${VAR}` the admin service cannot expand is a 422 naming it (`***` keeps a
        stored secret). Every record written is an admin audit event, and so is the import."""
        return await planned(body, apply=True)
