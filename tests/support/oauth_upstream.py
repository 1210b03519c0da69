"""A real OAuth-protected upstream MCP server for the tests: its own authorization server (authlib,
`oauth_upstream_as.py`) and two resources served by the official SDK, `/mcp` (streamable HTTP) and
`/sse` (HTTP+SSE), and a REST API under `/api` described by its own OpenAPI 3.1 document
(`/api/openapi.json`, public; `GET /api/whoami` needs a token for the resource `<base>/api`).

    python -m tests.support.oauth_upstream [--host 127.0.0.1] [--port 0]     (from the repository root)

prints `READY <base url>` once it accepts connections. What an MCP client meets in the wild:
- RFC 9728: each resource answers 401 with `WWW-Authenticate: Bearer resource_metadata=...` and
  serves its protected resource metadata (the SDK's bearer middleware does both);
- the authorization server of `oauth_upstream_as.py`, whose tokens are bound to the resource they
  were asked for and refused by the other one.

Tools: `whoami` (the user the token belongs to), `echo`, and tools only one upstream user is listed
and may call: `alice_notes` (user `alice`), `bob_notes` (user `bob`), and whatever `grow_mine(name)`
adds for the user calling it (announced with a list-changed notification on that user's session).
"""

from __future__ import annotations

__all__ = ["build_app", "serve"]

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.asgi_serve import bind, serve_ready
from tests.support.oauth_upstream_as import SCOPE, STORE, as_routes

# ------------------------------------------------------------------ the protected MCP resources


class Verifier:
    """Accepts live tokens issued by this AS for exactly this resource (RFC 8707 audience)."""

    def __init__(self, resource: str) -> None:
        self.resource = resource

    async def verify_token(self, token: str) -> AccessToken | None:
        found = STORE.access.get(token)
        if found is None or found.revoked or found.is_expired() or found.resource != self.resource:
            return None
        return AccessToken(
            token=token,
            client_id=found.client_id,
            scopes=found.scope.split(),
            expires_at=int(found.expires_at),
            resource=found.resource,
            subject=found.user,
        )


OWNERS: dict[str, str] = {"alice_notes": "alice", "bob_notes": "bob"}
"""Tool name -> the only upstream user who is listed it and may call it (tools not named: everyone's)."""


def _subject() -> str:
    from mcp.server.auth.middleware.auth_context import get_access_token

    token = get_access_token()
    return token.subject or "" if token else ""


class PerUserServer(MCPServer):
    """Lists each user the tools everyone has and their own; another user's tool is unknown to them."""

    async def list_tools(self) -> list[Any]:
        me = _subject()
        return [tool for tool in await super().list_tools() if OWNERS.get(tool.name, me) == me]

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        if OWNERS.get(name, _subject()) != _subject():
            raise ToolError(f"Unknown tool: {name}")
        return await super().call_tool(name, arguments, context)


def _resource_server(base: str, path: str) -> MCPServer:
    resource = f"{base}{path}"
    server = PerUserServer(
        "locked",
        token_verifier=Verifier(resource),
        auth=AuthSettings(
            issuer_url=base,  # type: ignore[arg-type]
            resource_server_url=resource,  # type: ignore[arg-type]
            required_scopes=[SCOPE],
            validate_token_resource=False,  # the verifier checks the audience itself
        ),
    )

    @server.tool()
    def whoami(ctx: Context) -> str:
        """The user whose token this call carries."""
        from mcp.server.auth.middleware.auth_context import get_access_token

        token = get_access_token()
        return token.subject or "" if token else ""

    @server.tool()
    def echo(text: str) -> str:
        """Return `text` unchanged."""
        return text

    for owned in OWNERS:
        server.add_tool(lambda: f"notes of {_subject()}", name=owned, description=f"{owned.split('_')[0]}'s notes")

    @server.tool()
    async def grow_mine(name: str, ctx: Context) -> str:
        """Add a tool called `name` that only the calling user is listed, and announce it on their session."""
        OWNERS[name] = _subject()
        server.add_tool(lambda: name, name=name, description=f"added for {_subject()}")
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            await ctx.notify_tools_changed()
        else:
            await ctx.session.send_tool_list_changed()
        return f"added {name}"

    return server


def _rest_api(base: str) -> Starlette:
    """The REST resource: a bearer token for exactly `<base>/api`, or 401 with the RFC 9728
    challenge naming its protected resource metadata (what Bastion's upstream OAuth probes)."""
    resource = f"{base}/api"
    verifier = Verifier(resource)
    metadata_url = f"{base}/.well-known/oauth-protected-resource/api"
    document = {
        "openapi": "3.1.0",
        "info": {"title": "locked REST API", "version": "1"},
        "servers": [{"url": resource}],
        "paths": {
            "/whoami": {
                "get": {
                    "operationId": "whoami",
                    "summary": "The user whose token this call carries.",
                    "responses": {
                        "200": {
                            "description": "the user",
                            "content": {
                                "application/json": {
                                    "schema": {"type": "object", "properties": {"user": {"type": "string"}}}
                                }
                            },
                        }
                    },
                }
            }
        },
    }

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def metadata(request: Request) -> Response:
        return JSONResponse({"resource": resource, "authorization_servers": [base], "scopes_supported": [SCOPE]})

    async def whoami(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        token = await verifier.verify_token(header[7:]) if header.lower().startswith("bearer ") else None
        if token is None:
            challenge = f'Bearer error="invalid_token", resource_metadata="{metadata_url}"'
            return JSONResponse({"error": "invalid_token"}, status_code=401, headers={"WWW-Authenticate": challenge})
        return JSONResponse({"user": token.subject or ""})

    return Starlette(
        routes=[
            Route("/api/openapi.json", openapi),
            Route("/api/whoami", whoami),
            Route("/api", whoami),  # the resource itself, where a client probes for the challenge
            Route("/.well-known/oauth-protected-resource/api", metadata),
        ]
    )


def build_app(base: str) -> Any:
    """One ASGI app: each resource is its SDK app as built (with its bearer middleware), the
    authorization server answers everything else."""
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    http = _resource_server(base, "/mcp").streamable_http_app(transport_security=security)
    sse = _resource_server(base, "/sse").sse_app(transport_security=security)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with http.router.lifespan_context(http):
            yield

    authorization = Starlette(routes=as_routes(base), lifespan=lifespan)
    rest = _rest_api(base)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if path.startswith(("/mcp", "/.well-known/oauth-protected-resource/mcp")):
            await http(scope, receive, send)
        elif path.startswith(("/sse", "/messages", "/.well-known/oauth-protected-resource/sse")):
            await sse(scope, receive, send)
        elif path == "/api" or path.startswith(("/api/", "/.well-known/oauth-protected-resource/api")):
            await rest(scope, receive, send)
        else:
            await authorization(scope, receive, send)

    return app


async def serve(host: str, port: int, lifetime: int) -> None:
    STORE.lifetime = lifetime
    sock, base = bind(host, port)
    await serve_ready(build_app(base), sock, base)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime", type=int, default=3600, help="access token lifetime in seconds")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.host, args.port, args.lifetime))
    except KeyboardInterrupt:
        pass
