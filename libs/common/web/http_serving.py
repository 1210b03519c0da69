"""A service's HTTP server (uvicorn) started inside the service's own event loop.

The service runner (`libs.common.runtime.runner`) owns the signals, and a start that cannot bind fails
the service's start."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn

__all__ = ["ServingHttp", "serve_http", "shared_port_socket"]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the service runner owns signals
        yield


class ServingHttp:
    """A running uvicorn server and the task serving it."""

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None]) -> None:
        self.server, self.task = server, task

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    async def stop(self, within: float = 10) -> None:
        """Let the requests in flight finish.

        A server still busy after `within` seconds is left to the process's end rather than holding up
        the rest of the shutdown."""
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, within)


def shared_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port with SO_REUSEPORT (and SO_REUSEADDR, as uvicorn's own).

    Every replica binding it so listens on the one port, and the kernel spreads new connections among
    them. The bind error names the address, as `serve_http`'s does."""
    family, kind, proto, _, address = socket.getaddrinfo(host or "0.0.0.0", port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"could not listen on {host}:{port} (shared): {exc.strerror}") from None
    return sock


async def serve_http(config: uvicorn.Config, name: str, sockets: list[socket.socket] | None = None) -> ServingHttp:
    """Start serving `config` (on `sockets` when given, bound already: `shared_port_socket`); returns once it listens.

    Raises the bind error (or says it stopped)."""
    server = _Server(config)
    task = asyncio.create_task(_serve(server, name, sockets), name=f"uvicorn-{name}")
    while not server.started:
        if task.done():
            task.result()  # raises the bind error
            raise RuntimeError(f"{name} HTTP server stopped during start-up")
        await asyncio.sleep(0.01)
    return ServingHttp(server, task)


async def _serve(server: uvicorn.Server, name: str, sockets: list[socket.socket] | None) -> None:
    """uvicorn logs a bind error and exits (`SystemExit`, which asyncio would also raise out of the event loop).

    Say it as the `OSError` it was, naming the address, so that the service's start fails with it and a
    caller can tell a taken port from anything else."""
    try:
        await server.serve(sockets=sockets)
    except SystemExit as exited:
        cause, config = exited.__context__, server.config
        if isinstance(cause, OSError):
            where = f"{config.host}:{config.port}"
            raise OSError(cause.errno, f"{name} could not listen on {where}: {cause.strerror}") from None
        raise RuntimeError(f"{name} HTTP server exited during start-up ({exited.code})") from None
