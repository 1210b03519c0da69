"""Ports for the servers we start.

Picked free by the OS, and held until the server that was told one has bound it, for as long as it may
need to bind it again.

A port picked by binding port 0 and closing the socket is the kernel's to hand out again at once: to
the next process that asks for a free one (on a busy machine, or under a parallel test suite, within
the second or more before our server binds it). That server then exits with "address already in use".
A `HeldPorts` socket stays bound with SO_REUSEADDR and never listens. The kernel then gives the port
to no other bind to port 0 nor as the local port of an outgoing connection, and a bind of it without
SO_REUSEADDR is refused. The servers we start set SO_REUSEADDR themselves (Valkey, nats-server and every Go
listener, uvicorn and asyncio, prometheus_client's HTTP server, Node), so they bind and listen on a
held port, and bind it again after a restart.
"""

from __future__ import annotations

import socket
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["HeldPorts", "free_port", "free_ports", "hold_addresses", "hold_ports"]


@dataclass
class HeldPorts:
    """Ports kept bound (SO_REUSEADDR, never listening) until `release()` or the end of a `with`."""

    ports: list[int]
    sockets: list[socket.socket]

    def release(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()

    def __enter__(self) -> HeldPorts:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def _bound(family: socket.AddressFamily, address: tuple[Any, ...]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def hold_ports(count: int, taken: Collection[int] = (), host: str = "127.0.0.1") -> HeldPorts:
    """`count` distinct free ports of `host`, none of them in `taken`, held until released.

    Every probe stays bound until all are picked, so none is handed out twice."""
    held = HeldPorts([], [])
    try:
        while len(held.ports) < count:
            sock = _bound(socket.AF_INET, (host, 0))
            held.sockets.append(sock)
            if (port := int(sock.getsockname()[1])) not in taken:
                held.ports.append(port)
    except BaseException:
        held.release()
        raise
    return held


def hold_addresses(addresses: Iterable[tuple[str, int]]) -> HeldPorts:
    """These (host, port) pairs, checked free a moment ago, held the same way until the server told each listens on it.

    One that cannot be bound is left to that server to say so when it starts."""
    held = HeldPorts([], [])
    for host, port in addresses:
        try:
            family, _, _, _, address = socket.getaddrinfo(host or "0.0.0.0", port, type=socket.SOCK_STREAM)[0]
            held.sockets.append(_bound(family, address))
        except OSError:
            continue
        held.ports.append(port)
    return held


def free_ports(count: int, taken: Collection[int] = (), host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports, none of them in `taken`, released at once.

    For a server that picks another when its port is taken (or a test that wants nothing listening
    there)."""
    with hold_ports(count, taken, host) as held:
        return held.ports


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host=host)[0]
