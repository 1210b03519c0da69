"""Shared command line for the example servers: stdio by default, `--http` or `--sse` on a port.

HTTP/SSE servers print one `READY <url>` line on stdout once the socket accepts connections, so
tests and benchmarks wait for that line instead of polling or sleeping. `--port 0` (the default)
lets the OS pick a free port and the READY line names the one it picked.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams


class HandshakeCounter:
    """Server middleware counting `initialize` / `server/discover` requests: one per client
    connection, so a test can prove a client reuses its session instead of reconnecting per call."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.method in ("initialize", "server/discover"):
            self.count += 1
        return await call_next(ctx)


def keep_subscriptions(server: MCPServer) -> set[str]:
    """Answer `resources/subscribe` and `resources/unsubscribe` on `server` (the high-level API has
    no decorator for them); the set of the URIs subscribed to now, for a server that notifies."""
    subscribed: set[str] = set()

    async def subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
        subscribed.add(str(params.uri))
        return EmptyResult()

    async def unsubscribe(ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
        subscribed.discard(str(params.uri))
        return EmptyResult()

    server._lowlevel_server.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    server._lowlevel_server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)
    return subscribed


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--http", action="store_true", help="serve streamable HTTP at /mcp")
    mode.add_argument("--sse", action="store_true", help="serve the legacy HTTP+SSE transport at /sse")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on the READY line)")
    parser.add_argument("--bearer", help="HTTP/SSE: answer 401 unless the request has 'Authorization: Bearer BEARER'")
    return parser.parse_args()


def _require_bearer(app: Any, token: str) -> Any:
    expected = f"Bearer {token}".encode()

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != expected:
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"www-authenticate", b'Bearer realm="example"'), (b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await app(scope, receive, send)

    return guarded


async def _serve_http(server: MCPServer, host: str, port: int, sse: bool, bearer: str | None = None) -> None:
    # DNS-rebinding protection would reject a Host header of a port we only learn after binding
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    if sse:
        app, path = server.sse_app(transport_security=security, host=host), "/sse"
    else:
        app, path = server.streamable_http_app(transport_security=security, host=host), "/mcp"
    if bearer:
        app = _require_bearer(app, bearer)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets
    sock.bind((host, port))
    port = sock.getsockname()[1]
    url = f"http://{host}:{port}{path}"
    await serve_ready(app, sock, url)


async def serve_ready(app: Any, sock: socket.socket, url: str) -> None:
    """Serve `app` on the bound `sock`; print `READY <url>` once it accepts connections. A graceful
    shutdown gives open streams 2 s: long-lived ones (SSE, listen) would otherwise hold it open forever."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                print(f"READY {url}", flush=True)

    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    await Server(config).serve(sockets=[sock])


def run(server: MCPServer, args: argparse.Namespace) -> None:
    if args.http or args.sse:
        try:
            asyncio.run(_serve_http(server, args.host, args.port, sse=args.sse, bearer=args.bearer))
        except KeyboardInterrupt:
            pass
    else:
        try:
            server.run("stdio")
        except KeyboardInterrupt:
            sys.exit(0)
