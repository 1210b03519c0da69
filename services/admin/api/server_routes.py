"""`/admin/v1/servers`: upstream MCP servers with what the executors report about them, and for one
that needs OAuth the link an admin opens to authorize it (`upstream_links`).

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

import logging

from fastapi import APIRouter, Response

from libs.common.messages import ServerRecord

from .errors import documented, needs
from .identity import current
from .models import ServerCreate, ServerOut, ServerUpdate, masked, unmask
from .route_helpers import IfMatch, check_expected, etag, expected_revision
from .store import AdminStore
from .upstream_links import UpstreamLinks

__all__ = ["server_routes"]

log = logging.getLogger(__name__)


def server_routes(router: APIRouter, store: AdminStore, links: UpstreamLinks | None) -> None:
    read, write = needs("servers:read"), needs("servers:write")

    async def server_out(record: ServerRecord, revision: int) -> ServerOut:
        config = masked(record.config)
        if record.config.disabled:
            return ServerOut(name=record.name, config=config, status="disabled", health="disabled", revision=revision)
        catalog = await store.catalog.find(record.name)
        if catalog is None:
            return ServerOut(name=record.name, config=config, status="pending", revision=revision)
        tools = len(catalog.value.tools) if catalog.value.status == "ready" else 0
        health = catalog.value.health or ("healthy" if catalog.value.status == "ready" else "down")
        # a link binds the server's shared upstream account: only for who may change the server
        may_link = links is not None and health == "needs_auth" and current().grants.allows("servers:write")
        link = await links.link(record.name, record.config) if links is not None and may_link else None
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

    @router.get("/servers", tags=["servers"], openapi_extra=read)
    async def list_servers() -> list[ServerOut]:
        """Every upstream server with what the executor reports about it. `env` and `headers`
        values (and an OpenAPI server's auth secrets) are masked: they usually hold the upstream's credentials."""
        return [await server_out(v.value, v.revision) for _, v in await store.servers.list()]

    @router.get("/servers/{name}", tags=["servers"], responses=documented(404), openapi_extra=read)
    async def get_server(name: str, response: Response) -> ServerOut:
        """One upstream server and its status."""
        found = await store.servers.get(name)
        etag(response, found.revision)
        return await server_out(found.value, found.revision)

    @router.post("/servers", status_code=201, tags=["servers"], responses=documented(409, 422), openapi_extra=write)
    async def add_server(body: ServerCreate) -> ServerOut:
        """Add an upstream MCP server (one `mcpServers` entry); executors connect to it at once."""
        record = ServerRecord(name=body.name, config=store.sealer.seal(body.config))
        revision = await store.servers.create(body.name, record)
        log.info("admin: added server %r (%s)", body.name, body.config.transport)
        return await server_out(record, revision)

    @router.put("/servers/{name}", tags=["servers"], responses=documented(404, 409, 422), openapi_extra=write)
    async def update_server(name: str, body: ServerUpdate, response: Response, if_match: IfMatch = None) -> ServerOut:
        """Replace a server's entry; executors reconnect with it. Masked `env`/`headers` values
        (sent back as read) keep their stored values."""
        expected = expected_revision(if_match)
        current = await store.servers.get(name)
        check_expected(current, expected, store.servers.stale(name))
        config = unmask(body.config, current.value.config)
        record = ServerRecord(name=name, config=store.sealer.seal(config))
        revision = await store.servers.update(name, record, current.revision)
        log.info("admin: updated server %r", name)
        etag(response, revision)
        return await server_out(record, revision)

    @router.delete(
        "/servers/{name}", status_code=204, tags=["servers"], responses=documented(404, 409), openapi_extra=write
    )
    async def remove_server(name: str, if_match: IfMatch = None) -> Response:
        """Remove a server; its tools disappear from every catalog."""
        await store.servers.delete(name, expected_revision(if_match))
        log.info("admin: removed server %r", name)
        return Response(status_code=204)
