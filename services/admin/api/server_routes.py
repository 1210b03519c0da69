"""`/admin/v1/servers`.

Upstream MCP servers with what the executors report about them, and for one that needs OAuth the link an
admin opens to authorize it (`upstream_links`).

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

import logging
from dataclasses import dataclass

from fastapi import APIRouter, Response

from libs.common.contracts.messages import ServerRecord

from .command_rights import comparable, require_command
from .identity import current
from .models import ServerCreate, ServerOut, ServerUpdate, masked
from .route_helpers import IfMatch, check_expected, etag, expected_revision
from .route_table import Route, register
from .secret_binding import fill_masks, require_bound, server_destination, unmask_server
from .store import AdminStore
from .upstream_links import UpstreamLinks

__all__ = ["server_routes"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerParts:
    """What the server routes share: the store, and the links that authorize an upstream needing OAuth."""

    store: AdminStore
    links: UpstreamLinks | None


async def server_out(parts: ServerParts, record: ServerRecord, revision: int) -> ServerOut:
    config = masked(record.config)
    if record.config.disabled:
        return ServerOut(name=record.name, config=config, status="disabled", health="disabled", revision=revision)
    catalog = await parts.store.catalog.find(record.name)
    if catalog is None:
        return ServerOut(name=record.name, config=config, status="pending", revision=revision)
    tools = len(catalog.value.tools) if catalog.value.status == "ready" else 0
    health = catalog.value.health or ("healthy" if catalog.value.status == "ready" else "down")
    # a link binds the server's shared upstream account: only for who may change the server
    may_link = parts.links is not None and health == "needs_auth" and current().grants.allows("servers:write")
    link = await parts.links.link(record.name, record.config) if parts.links is not None and may_link else None
    return ServerOut(
        name=record.name,
        config=config,
        status=catalog.value.status,
        health=health,
        breaker=catalog.value.breaker,
        error=catalog.value.error,
        stderr_tail=catalog.value.stderr_tail,
        tools=tools,
        authorize_url=link,
        revision=revision,
    )


async def list_servers(parts: ServerParts) -> list[ServerOut]:
    """Every upstream server with what the executor reports about it.

    `env` and `headers` values (and an OpenAPI server's auth secrets) are masked: they usually hold the
    upstream's credentials."""
    return [await server_out(parts, v.value, v.revision) for _, v in await parts.store.servers.list()]


async def get_server(parts: ServerParts, name: str, response: Response) -> ServerOut:
    """One upstream server and its status."""
    found = await parts.store.servers.get(name)
    etag(response, found.revision)
    return await server_out(parts, found.value, found.revision)


async def add_server(parts: ServerParts, body: ServerCreate) -> ServerOut:
    """Add an upstream MCP server (one `mcpServers` entry); executors connect to it at once.

    A stdio server (`command`) and the other owner-only fields need `servers:command` too: the owner's."""
    require_command(current(), f"server {body.name!r}", None, body.config)
    unmask_server(body.config, None, f"server {body.name!r}")  # a mask with nothing stored is refused
    record = ServerRecord(name=body.name, config=parts.store.sealer.seal(body.config))
    revision = await parts.store.servers.create(body.name, record)
    log.info("admin: added server %r (%s)", body.name, body.config.transport)
    return await server_out(parts, record, revision)


async def update_server(
    parts: ServerParts, name: str, body: ServerUpdate, response: Response, if_match: IfMatch = None
) -> ServerOut:
    """Replace a server's entry; executors reconnect with it.

    Masked secrets (sent back as read) keep their stored values while the destination (URL, command,
    OpenAPI document or base URL) stays: changing it needs them given again (422 `secret_unbound`).
    Changing what a stdio server runs (or another owner-only field) needs `servers:command`."""
    expected = expected_revision(if_match)
    stored = await parts.store.servers.get(name)
    check_expected(stored, expected, parts.store.servers.stale(name))
    before, what = comparable(parts.store.sealer, stored.value.config), f"server {name!r}"
    config, kept = fill_masks(body.config, before, what)
    require_command(current(), what, before, comparable(parts.store.sealer, config))  # a 403 before a 422
    require_bound(what, kept, server_destination(before), server_destination(config))  # `***`: same destination
    record = ServerRecord(name=name, config=parts.store.sealer.seal(config))
    revision = await parts.store.servers.update(name, record, stored.revision)
    log.info("admin: updated server %r", name)
    etag(response, revision)
    return await server_out(parts, record, revision)


async def remove_server(parts: ServerParts, name: str, if_match: IfMatch = None) -> Response:
    """Remove a server; its tools disappear from every catalog.

    `servers:write` is enough, a stdio server's too: removing one runs nothing."""
    await parts.store.servers.delete(name, expected_revision(if_match))
    log.info("admin: removed server %r", name)
    return Response(status_code=204)


SERVER_ROUTES = (
    Route("GET", "/servers", "servers:read", list_servers),
    Route("GET", "/servers/{name}", "servers:read", get_server, errors=(404,)),
    Route("POST", "/servers", "servers:write", add_server, 201, (409, 422)),
    Route("PUT", "/servers/{name}", "servers:write", update_server, errors=(404, 409, 422)),
    Route("DELETE", "/servers/{name}", "servers:write", remove_server, 204, (404, 409)),
)


def server_routes(router: APIRouter, store: AdminStore, links: UpstreamLinks | None) -> None:
    register(router, SERVER_ROUTES, "servers", ServerParts(store, links))
