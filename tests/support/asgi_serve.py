"""Serve an ASGI app on a free (or given) port with uvicorn and print `READY <base url><path>` once it
accepts connections: how the test servers tell `serving_process` where they are."""

from __future__ import annotations

import socket
from typing import Any

__all__ = ["bind", "serve_ready"]


def bind(host: str, port: int) -> tuple[socket.socket, str]:
    """A listening-ready socket on (host, port) and its base URL (the port filled in when 0)."""
    sock = socket.socket(socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock, f"http://{host}:{sock.getsockname()[1]}"


async def serve_ready(app: Any, sock: socket.socket, url: str, lifespan: str = "on") -> None:
    import uvicorn

    class Uvicorn(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                print(f"READY {url}", flush=True)

    # long-lived streams would otherwise hold a graceful shutdown open
    config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, timeout_graceful_shutdown=2)
    await Uvicorn(config).serve(sockets=[sock])
