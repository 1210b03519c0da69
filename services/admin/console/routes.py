"""The console's routes.

Its page and static files (`/console`, public: they hold no data), and the few API routes the console
needs beyond the admin API (`/admin/v1/console/...`, behind the same credential): the catalog searched
server-side, a remote server's connectivity test, and the playground's calls as a virtual key through the
gateway.

(No `from __future__ import annotations`: FastAPI evaluates the route signatures.)
"""

import mimetypes
from collections.abc import Sequence
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from libs.common.contracts.config import ServerConfig
from libs.common.web.favicon import FAVICON, FAVICON_TYPE
from libs.common.web.page_security import page_headers

from ..api.admin_route import bound_route
from ..api.auth import Authenticator
from ..api.command_rights import require_command
from ..api.errors import AdminError, documented, needs
from ..api.identity import current
from ..api.models import ServerCreate
from ..api.routes import api_router
from ..api.secret_binding import unmask_server
from ..api.store import AdminStore
from ..roles import PUBLIC
from .app_frames import AppFrames, frame_response
from .catalog import MAX_PAGE, CatalogPage, gateway_name, search
from .playground import (
    Playground,
    PlaygroundAnswer,
    PlaygroundCall,
    PlaygroundChat,
    PlaygroundExecute,
    PlaygroundKey,
)
from .playground_apps import AppAnswer, AppHost, PlaygroundApp, PlaygroundAppCall, app_server
from .probe import ProbeAnswer, probe

__all__ = ["CONSOLE_PATH", "console_api", "console_pages"]

CONSOLE_PATH = "/console"
_NAMED = {
    "stdio": "a stdio server",
    "openapi": "an OpenAPI server",
    "http": "an HTTP server",
    "sse": "an SSE server",
    "a2a": "an A2A agent",
}


def _static() -> dict[str, tuple[bytes, str]]:
    """Every file under `static/` by its path there, read once: nothing else can be asked for."""
    found: dict[str, tuple[bytes, str]] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            name = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, name + "/")
            elif not child.name.startswith("."):
                kind = mimetypes.guess_type(child.name)[0] or "application/octet-stream"
                if child.name.endswith(".js"):
                    kind = "text/javascript"
                found[name] = (child.read_bytes(), kind)

    walk(files(__package__).joinpath("static"), "")
    return found


def _headers(page: str) -> dict[str, str]:
    # the import map is the one inline script: allowed by its hash, nothing else inline runs
    return {**page_headers(page), "Cache-Control": "no-store"}


def console_pages(auth: Authenticator, frames: AppFrames) -> APIRouter:
    """`GET /console` (the page) and `GET /console/{file}` (its scripts, styles, vendored toolkit).

    Public, they hold no data; `GET /console/app-frame/{ticket}` serves an app the playground read, once,
    to whoever holds its ticket (`app_frames`)."""
    router = APIRouter(route_class=bound_route(auth))
    public = needs(PUBLIC)
    assets = _static()
    page = assets.pop("index.html")[0].decode()
    headers = _headers(page)

    @router.get(CONSOLE_PATH, response_class=HTMLResponse, include_in_schema=False, openapi_extra=public)
    async def console() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)

    @router.get(CONSOLE_PATH + "/app-frame/{ticket}", include_in_schema=False, openapi_extra=public)
    async def app_frame(ticket: str) -> Response:
        return frame_response(frames, ticket)

    @router.get(CONSOLE_PATH + "/{name:path}", include_in_schema=False, openapi_extra=public)
    async def asset(name: str) -> Response:
        if name not in assets:
            return Response("not found", status_code=404, media_type="text/plain")
        body, kind = assets[name]
        return Response(
            body, media_type=kind, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        )

    @router.get("/favicon.ico", include_in_schema=False, openapi_extra=public)
    async def favicon() -> Response:  # every page of this service: the console, the dashboard, the API docs
        return Response(FAVICON, media_type=FAVICON_TYPE, headers={"Cache-Control": "max-age=86400"})

    return router


def _require_testable(config: ServerConfig) -> None:
    """Only remote MCP servers are probed from the admin service; other kinds are tested by saving them."""
    if config.transport in ("http", "sse"):
        return
    stdio = " (a stdio server is a command the executors run, not the admin service)"
    raise AdminError(
        422,
        "not_testable",
        f"{_NAMED[config.transport]} is tested by saving it: its status shows what the executor found"
        + (stdio if config.transport == "stdio" else ""),
    )


def console_api(
    store: AdminStore,
    auth: Authenticator,
    gateway_url: str,
    egress: Sequence[str] = (),
    frames: AppFrames | None = None,
) -> APIRouter:
    """The console's API routes under `/admin/v1/console`, each behind the permission it declares.

    The catalog reads servers, the connectivity test writes them (reaching only what the executors'
    egress rules let through: public addresses and `egress`, the non-public hosts every server may
    reach), the playground acts as a key whose secret the person holds (listing keys is what it needs of
    the admin API)."""
    router = api_router(auth)
    prefix = "/console"
    playground = Playground(gateway_url)
    apps = AppHost(playground.url, frames or AppFrames())

    @router.get(prefix + "/catalog", tags=["console"], openapi_extra=needs("servers:read"))
    async def catalog(
        q: Annotated[str, Query(max_length=256, description="Words each matching tool contains.")] = "",
        server: Annotated[str | None, Query(max_length=256)] = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    ) -> CatalogPage:
        """One page of the tools of every ready server matching `q`, with their definitions."""
        return search([v.value for _, v in await store.catalog.list()], q, server or None, offset, limit)

    @router.post(
        prefix + "/servers/test", tags=["console"], responses=documented(422), openapi_extra=needs("servers:write")
    )
    async def test_server(body: ServerCreate) -> ProbeAnswer:
        """Connect to a remote server's configuration and list its tools, without saving it, as the executors would.

        Loopback, private and metadata addresses are refused unless an owner allowed them
        (`allow_private_hosts`, `egress`). Masked values (`***`) of an existing server of that name are
        its stored ones while the URL stays the stored one (else 422 `secret_unbound`). Testing an entry
        with an owner-only field (a command, which a test would start) needs `servers:command`."""
        config = body.config
        require_command(current(), f"testing server {body.name!r}", None, config)
        _require_testable(config)
        stored = await store.servers.find(body.name)
        if stored is not None:  # `***` keeps a stored secret, for the destination it was stored for only
            config = unmask_server(config, store.sealer.open(stored.value.config), f"testing server {body.name!r}")
        return await probe(config, egress)

    _playground_routes(router, store, playground, apps)
    return router


def _playground_routes(router: APIRouter, store: AdminStore, playground: Playground, apps: AppHost) -> None:
    """The playground's routes: act as a virtual key whose secret the person holds, through the gateway."""
    prefix = "/console"

    def _playground() -> Playground:
        if not playground.url:
            raise AdminError(
                503,
                "playground_unavailable",
                "the playground needs the gateway's address: start the admin service with BASTION_PUBLIC_URL",
            )
        return playground

    @router.post(
        prefix + "/playground/tools", tags=["console"], responses=documented(422), openapi_extra=needs("keys:read")
    )
    async def playground_tools(body: PlaygroundKey) -> PlaygroundAnswer:
        """The tools a virtual key sees, listed through the gateway's `/mcp` with that key."""
        return await _playground().tools(body)

    @router.post(
        prefix + "/playground/call", tags=["console"], responses=documented(422), openapi_extra=needs("keys:read")
    )
    async def playground_call(body: PlaygroundCall) -> PlaygroundAnswer:
        """Call a tool as a virtual key through the gateway's `/mcp`: a real call (policy, budgets, audit).

        The key's secret is used for this request only."""
        return await _playground().call(body)

    @router.post(
        prefix + "/playground/chat", tags=["console"], responses=documented(422), openapi_extra=needs("keys:read")
    )
    async def playground_chat(body: PlaygroundChat) -> PlaygroundAnswer:
        """One chat completion through the gateway's `/v1` as a virtual key.

        A real request (its budget, the provider's price, audit). The key's secret is used for this
        request only. `tools` are gateway names from the key's list; the model is offered those only
        (none when empty)."""
        chat = _playground()
        named = {
            gateway_name(c.server, t.tool, c.namespace): f"{c.server}/{t.tool}"
            for _, v in await store.catalog.list()
            if (c := v.value).status == "ready"
            for t in c.tools
        }
        unknown = [name for name in body.tools if name not in named]
        if unknown:
            raise AdminError(422, "unknown_tool", f"no server offers {', '.join(unknown)}")
        return await chat.chat(body, [named[name] for name in body.tools])

    @router.post(
        prefix + "/playground/execute", tags=["console"], responses=documented(422), openapi_extra=needs("keys:read")
    )
    async def playground_execute(body: PlaygroundExecute) -> PlaygroundAnswer:
        """Run one tool call a model proposed in a playground chat, as the virtual key.

        It goes through the gateway's `/v1/mcp/tool/execute`: a real call (policy, budgets, audit)."""
        return await _playground().execute(body)

    @router.post(
        prefix + "/playground/app", tags=["console"], responses=documented(422), openapi_extra=needs("keys:read")
    )
    async def playground_app(body: PlaygroundApp) -> AppAnswer:
        """Read an MCP App (`ui://`) through the gateway as a virtual key, for the playground to render.

        The answer names a one-time frame (`GET /console/app-frame/<frame>`) serving the app under the
        policy its `_meta.ui.csp` declares."""
        return await _apps().open(body)

    @router.post(
        prefix + "/playground/app-call", tags=["console"], responses=documented(422), openapi_extra=needs("keys:read")
    )
    async def playground_app_call(body: PlaygroundAppCall) -> AppAnswer:
        """Run a `tools/call` an app rendered in the playground made, as the virtual key, as a host.

        Only a tool of the app's own server that the key may call and whose `_meta.ui.visibility` names
        `"app"` goes through; anything else is refused to the app."""
        try:
            server = app_server(body.uri)
        except ValueError as exc:
            raise AdminError(422, "not_an_app", str(exc)) from None
        names: dict[str, str] = {}
        for _, v in await store.catalog.list():
            if (c := v.value).server == server:
                names |= {t.tool: gateway_name(c.server, t.tool, c.namespace) for t in c.tools}
        names |= {gateway: gateway for gateway in list(names.values())}  # its gateway names too
        return await _apps().call(body, names)

    def _apps() -> AppHost:
        _playground()  # the same address, the same refusal without it
        return apps
