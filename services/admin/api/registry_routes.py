"""`/admin/v1/registries` and `/admin/v1/servers/import`.

Servers found in an MCP Registry, imported as `mcpServers` entries pinned at a version, and newer
versions offered as updates a person approves (docs/registry.md).

An import writes an entry as `POST /servers` does, under the same rules: `servers:write`, and
`servers:command` (the owner's) when the entry is a command (a package run over stdio), its secrets
(`env`, `headers`) sealed. An update is the same write over the stored entry, its env and headers
kept (they are the values a person gave), so approving it changes what runs only as far as the
registry's new version does.

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

import logging
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.messages import ServerRecord
from libs.common.contracts.refused_values import refusal_text
from libs.common.contracts.registry_entries import ImportRefused, RegistryOrigin, choices_of, entry_for

from .command_rights import comparable, require_command
from .errors import AdminError
from .identity import current
from .models import ServerOut, _server_name, masked
from .registry_client import RegistryClient, RegistryUnreachable, ServerNotFound
from .route_table import Route, register
from .secret_binding import require_bound, server_destination
from .store import AdminStore

__all__ = ["registry_routes"]

log = logging.getLogger(__name__)


class ServerImport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    registry: str = Field(examples=["official"])
    """A configured registry's name (`GET /admin/v1/registries`)."""
    server: str = Field(min_length=3, max_length=200, examples=["io.github.user/weather"])
    """The server's name in the registry."""
    version: str = Field(default="latest", min_length=1, max_length=255)
    name: Annotated[str | None, AfterValidator(lambda n: n if n is None else _server_name(n))] = None
    """The entry's name in Bastion (agents see `<name>__<tool>`); default: the last part of `server`."""
    choice: str | None = Field(default=None, examples=["remote:0", "package:0"])
    """Which remote or package to run (`choices` of `GET .../entries`); default: the first."""
    values: dict[str, str] = Field(default_factory=dict)
    """Values of the inputs it declares, by name or `valueHint`: environment variables, headers,
    arguments (their flag or `valueHint`), URL variables. Required ones without a default must be
    given; a name no input of the chosen remote or package has is refused (422, naming those it has)."""


class UpdateApproval(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(default="latest", min_length=1, max_length=255)
    values: dict[str, str] = Field(default_factory=dict)
    """Values for inputs the new version adds, by name or `valueHint`; a name the new version has no
    input for is refused. The stored entry's env and headers are kept while the version runs where the
    stored one did (same URL, same command and args); else give them again here."""


class RegistryServer(BaseModel):
    registry: str
    server: dict[str, Any]
    """Its `server.json`, as the registry published it."""
    choices: list[str]
    """The ways it can run through Bastion: `remote:<n>`, then `package:<n>` (stdio packages)."""


class RegistryUpdate(BaseModel):
    name: str
    """The entry in Bastion."""
    registry: str
    server: str
    pinned: str
    latest: str | None
    error: str | None = None
    """Why the registry could not be asked (the others are still listed)."""


def _refused(exc: Exception) -> AdminError:
    if isinstance(exc, ServerNotFound):
        return AdminError(404, "not_found", str(exc))
    if isinstance(exc, KeyError):
        return AdminError(404, "not_found", str(exc.args[0]))
    if isinstance(exc, ImportRefused):
        return AdminError(422, "import_refused", str(exc))
    return AdminError(502, "registry_unreachable", str(exc))


@dataclass(frozen=True)
class RegistryParts:
    store: AdminStore
    client: RegistryClient


_FAILURES = (ServerNotFound, KeyError, ImportRefused, RegistryUnreachable)


async def list_registries(parts: RegistryParts) -> dict[str, str]:
    """The configured MCP Registries, name -> base URL (without any credentials it carries)."""
    return {name: str(httpx.URL(url).copy_with(userinfo=b"")) for name, url in parts.client.registries.items()}


async def search_registry(
    parts: RegistryParts,
    registry: str,
    search: str = "",
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 30,
) -> dict[str, Any]:
    """One page of the registry's servers (latest versions) whose names contain `search`.

    As it answers (`servers`, `metadata.nextCursor`)."""
    try:
        return await parts.client.search(registry, search, cursor, limit)
    except _FAILURES as exc:
        raise _refused(exc) from None


async def registry_server(parts: RegistryParts, registry: str, server: str, version: str = "latest") -> RegistryServer:
    """One server's `server.json` at `version` and the ways it can run through Bastion."""
    try:
        detail = (await parts.client.version(registry, server, version))["server"]
    except _FAILURES as exc:
        raise _refused(exc) from None
    return RegistryServer(registry=registry, server=detail, choices=choices_of(detail))


async def import_server(parts: RegistryParts, body: ServerImport) -> ServerOut:
    """Add a server found in a registry: its remote or package as an entry pinned at its version.

    A package run as a command needs `servers:command` (the owner's), as any stdio server does."""
    try:
        detail = (await parts.client.version(body.registry, body.server, body.version))["server"]
        entry, choice, inputs = entry_for(detail, body.values, body.choice)
    except _FAILURES as exc:
        raise _refused(exc) from None
    name = body.name or _local_name(body.server)
    origin = RegistryOrigin(
        registry=body.registry, server=body.server, version=detail["version"], choice=choice, inputs=inputs
    )
    config = _validated({**entry, "registry": origin.model_dump()})
    require_command(current(), f"server {name!r}", None, config)
    record = ServerRecord(name=name, config=parts.store.sealer.seal(config))
    revision = await parts.store.servers.create(name, record)
    log.info("admin: imported server %r from registry %r at %s", name, body.registry, origin.version)
    return ServerOut(name=name, config=masked(config), status="pending", revision=revision)


async def registry_updates(parts: RegistryParts) -> list[RegistryUpdate]:
    """Every imported server whose registry has a newer version than the one it is pinned at (or could not be asked).

    Updates that wait for a person to approve them."""
    updates: list[RegistryUpdate] = []
    for name, stored in await parts.store.servers.list():
        origin = stored.value.config.registry
        if origin is None:
            continue
        try:
            latest: str | None = (await parts.client.version(origin.registry, origin.server))["server"]["version"]
            error = None
        except _FAILURES as exc:
            latest, error = None, str(exc)
        if latest != origin.version:
            updates.append(
                RegistryUpdate(
                    name=name,
                    registry=origin.registry,
                    server=origin.server,
                    pinned=origin.version,
                    latest=latest,
                    error=error,
                )
            )
    return updates


async def approve_update(parts: RegistryParts, name: str, body: UpdateApproval) -> ServerOut:
    """Move an imported server to another version of its registry entry.

    (Default: the latest), keeping its env and headers and its other settings."""
    store = parts.store
    stored = await store.servers.get(name)
    before = comparable(store.sealer, stored.value.config)
    if before.registry is None:
        raise AdminError(422, "not_imported", f"server {name!r} was not imported from a registry")
    origin = before.registry
    stored_values = {**origin.inputs, **before.env, **before.headers}
    try:
        detail = (await parts.client.version(origin.registry, origin.server, body.version))["server"]
        entry, choice, inputs = entry_for(detail, body.values, origin.choice or None, stored_values)
    except _FAILURES as exc:
        raise _refused(exc) from None
    moved = origin.model_copy(update={"version": detail["version"], "choice": choice, "inputs": inputs})
    kept = before.model_dump(exclude_unset=True, exclude={"command", "args", "env", "url", "headers", "type"})
    config = _validated({**kept, **entry, "registry": moved.model_dump()})
    require_command(current(), f"server {name!r}", before, config)
    # the stored env and headers carried over, not given again, go only where they went before
    carried = [f"env {k!r}" for k in config.env if k in before.env and k not in body.values]
    carried += [f"header {k!r}" for k in config.headers if k in before.headers and k not in body.values]
    require_bound(f"server {name!r}", carried, server_destination(before), server_destination(config))
    record = ServerRecord(name=name, config=store.sealer.seal(config))
    revision = await store.servers.update(name, record, stored.revision)
    log.info("admin: server %r moved from %s to %s (%s)", name, origin.version, moved.version, origin.server)
    return ServerOut(name=name, config=masked(config), status="pending", revision=revision)


REGISTRY_ROUTES = (
    Route("GET", "/registries", "servers:read", list_registries),
    Route("GET", "/registries/{registry}/servers", "servers:read", search_registry, errors=(404,)),
    Route("GET", "/registries/{registry}/entry", "servers:read", registry_server, errors=(404,)),
    Route("POST", "/servers/import", "servers:write", import_server, 201, (404, 409, 422)),
    Route("GET", "/registries/updates", "servers:read", registry_updates),
    Route("POST", "/servers/{name}/registry-update", "servers:write", approve_update, errors=(404, 409, 422)),
)


def registry_routes(router: APIRouter, store: AdminStore, client: RegistryClient) -> None:
    register(router, REGISTRY_ROUTES, "registries", RegistryParts(store, client))


def _local_name(server: str) -> str:
    """`io.github.user/weather-mcp` -> `weather-mcp` (a valid server name, else 422 asking for `name`)."""
    tail = server.rsplit("/", 1)[-1]
    try:
        return _server_name(tail)
    except ValueError:
        raise AdminError(422, "import_refused", f"{tail!r} is not a server name: give `name`") from None


def _validated(entry: dict[str, Any]) -> ServerConfig:
    try:
        return ServerConfig.model_validate(entry)
    except ValidationError as exc:  # where and which rule: the entry holds the values given, secrets too
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(the entry)"
        raise AdminError(
            422, "import_refused", f"the registry's entry is not a valid server: {where}: {refusal_text(first)}"
        ) from None
