"""The gateway as an MCP Registry (docs/registry.md).

`GET /v0.1/servers`, `/v0.1/servers/{name}/versions` and
`/v0.1/servers/{name}/versions/{version|latest}`, the official registry API's read routes, answered to a
virtual key (or an OAuth access token) with exactly the servers it may use.

One entry per server, not one for the whole gateway: registry clients (the registry's own, VS Code,
ToolHive, Obot) show and install entries one by one, and a person picks the servers an agent gets.
The gateway has one MCP endpoint, `/mcp`; an entry's `remote` is that endpoint narrowed to its server
with the `X-Bastion-Include-Servers` header (a fixed `value`, so a client sends it as written), beside
the `Authorization` header the client asks its user for (a secret). A server counts as usable when
policy lets the key use at least one of its tools, prompts, resources or templates: the same question
`tools/list` asks, so the registry never shows more than the key's agents can see. A server the key
cannot use answers 404, as one that does not exist does.

Versions: the gateway has no release of a server to number, so each entry's version is `1.0.0+<digest>`
of the definitions the key may use (semver build metadata): a client sees a new version when they change.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from libs.common.contracts.messages import Caller
from services.ingress.auth.keys import AuthFailure
from services.ingress.catalog.aggregated import Catalog, CatalogEntry
from services.ingress.sending.request_path import RequestPath

__all__ = ["SCHEMA_URL", "registry_router", "server_entries"]

SCHEMA_URL: Final = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
OFFICIAL_META: Final = "io.modelcontextprotocol.registry/official"
GATEWAY_META: Final = "io.bastion/gateway"
MAX_PAGE: Final = 100


def namespace_of(public_url: str) -> str:
    """The reverse-DNS namespace of the gateway's entries.

    `gw.example.com` -> `com.example.gw` (an address or a one-label host as it is)."""
    host = urlsplit(public_url).hostname or "localhost"
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        return ".".join(reversed(host.split(".")))


def _version(entries: list[CatalogEntry]) -> str:
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda e: (e.target or e.tool, e.name)):
        digest.update(orjson.dumps(entry.definition, option=orjson.OPT_SORT_KEYS))
    return f"1.0.0+{digest.hexdigest()[:12]}"


def _counted(entries: list[CatalogEntry], catalog: Catalog) -> str:
    tools = sum(1 for e in entries if e.name in catalog.by_name)
    prompts = sum(1 for e in entries if e.name in catalog.prompt_by_name)
    other = len(entries) - tools - prompts
    parts = [f"{tools} tool(s)"] + ([f"{prompts} prompt(s)"] if prompts else [])
    return ", ".join(parts + ([f"{other} resource(s)"] if other else []))


def server_entry(server: str, entries: list[CatalogEntry], catalog: Catalog, public_url: str) -> dict[str, Any]:
    """One `ServerResponse`: the server as the key sees it, its remote the gateway narrowed to it."""
    description = f"{server} through the Bastion gateway: {_counted(entries, catalog)}"[:100]
    detail = {
        "$schema": SCHEMA_URL,
        "name": f"{namespace_of(public_url)}/{server}",
        "title": server,
        "description": description,
        "version": _version(entries),
        "remotes": [
            {
                "type": "streamable-http",
                "url": f"{public_url}/mcp",
                "headers": [
                    {
                        "name": "Authorization",
                        "description": "Your Bastion virtual key, as `Bearer <key>`",
                        "value": "Bearer {api_key}",
                        "isRequired": True,
                        "isSecret": True,
                        "variables": {"api_key": {"isRequired": True, "isSecret": True}},
                    },
                    {
                        "name": "X-Bastion-Include-Servers",
                        "description": "Narrows the gateway to this server",
                        "value": server,
                    },
                ],
            }
        ],
    }
    meta = {OFFICIAL_META: {"status": "active", "isLatest": True}, GATEWAY_META: {"server": server}}
    return {"server": detail, "_meta": meta}


async def server_entries(
    catalog: Catalog, path: RequestPath, caller: Caller, public_url: str
) -> dict[str, dict[str, Any]] | str:
    """Name -> `ServerResponse` of every server `caller` may use, by name; or why policy did not say."""
    usable: dict[str, list[CatalogEntry]] = {}
    for listing in (catalog.tools, catalog.prompts, catalog.resources, catalog.templates):
        if not listing.entries:
            continue
        answer = await path.visible(caller, listing.pairs)
        if answer.error is not None:
            return answer.error.message
        for index in answer.allowed:
            entry = listing.entries[index]
            usable.setdefault(entry.server, []).append(entry)
    return {
        f"{namespace_of(public_url)}/{server}": server_entry(server, entries, catalog, public_url)
        for server, entries in sorted(usable.items())
    }


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def registry_router(
    catalog: Catalog,
    path: RequestPath,
    authenticate: Callable[[Request], Caller | AuthFailure],
    public_url: Callable[[], str],
) -> APIRouter:
    """The read routes; `authenticate` resolves the request's `Authorization` (and counts a refusal)."""
    router = APIRouter()

    async def visible(request: Request) -> dict[str, dict[str, Any]] | JSONResponse:
        caller = authenticate(request)
        if isinstance(caller, AuthFailure):
            return _error(401, caller.message, {"WWW-Authenticate": caller.challenge or "Bearer"})
        found = await server_entries(catalog, path, caller, public_url())
        return _error(503, f"policy did not answer: {found}") if isinstance(found, str) else found

    @router.get("/v0.1/servers")
    async def list_servers(
        request: Request, search: str = "", cursor: str = "", limit: int = 30, version: str = "latest"
    ) -> JSONResponse:
        found = await visible(request)
        if isinstance(found, JSONResponse):
            return found
        names = [
            n for n in found if search.lower() in n.lower() and version in ("latest", found[n]["server"]["version"])
        ]
        start = int(cursor) if cursor.isdigit() else 0
        size = max(1, min(limit, MAX_PAGE))
        page = names[start : start + size]
        metadata: dict[str, Any] = {"count": len(page)}
        if start + size < len(names):
            metadata["nextCursor"] = str(start + size)
        return JSONResponse({"servers": [found[n] for n in page], "metadata": metadata})

    @router.get("/v0.1/servers/{name:path}/versions/{version}")
    async def one_version(request: Request, name: str, version: str) -> JSONResponse:
        found = await visible(request)
        if isinstance(found, JSONResponse):
            return found
        entry = found.get(name)
        if entry is None or version not in ("latest", entry["server"]["version"]):
            return _error(404, "Server not found")
        return JSONResponse(entry)

    @router.get("/v0.1/servers/{name:path}/versions")
    async def versions(request: Request, name: str) -> JSONResponse:
        found = await visible(request)
        if isinstance(found, JSONResponse):
            return found
        if name not in found:
            return _error(404, "Server not found")
        return JSONResponse({"servers": [found[name]], "metadata": {"count": 1}})

    return router
