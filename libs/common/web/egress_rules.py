"""Egress rules at connection time: a server's HTTP connections checked against what its names resolve to.

The rules themselves (which addresses are refused, how an allowed host is written, the configuration's
`egress` section) are data, in `libs.common.contracts.egress`; this module resolves names and refuses
the connection (`EgressRefused`), so it is the part that does I/O.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable

from libs.common.contracts.egress import ALLOW_HINT, METADATA_NAMES, address_problem, host_key, literal_address

__all__ = ["EgressRefused", "EgressRules", "Resolver", "system_resolver"]

Resolver = Callable[[str, int], list[str]]
"""(host, port) -> the addresses the host resolves to, blocking (`system_resolver` by default; the
asynchronous path runs it in a worker thread, as asyncio's own `getaddrinfo` does)."""


class EgressRefused(ConnectionRefusedError):
    """A connection the rules refuse; the message names the host, the address and how to allow it.

    A `ConnectionRefusedError`, so whatever reports a refused connection reports this one (a lean call's,
    `services.executor.error_mapping`): the upstream is unreachable, the request not sent."""

    def __init__(self, host: str, why: str) -> None:
        written = host.strip().removeprefix("[").removesuffix("]")
        super().__init__(f"refused to connect to {host}: {why}; {ALLOW_HINT.format(host=written)}")
        self.host = host


def system_resolver(host: str, port: int) -> list[str]:
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in found))


class EgressRules:
    """The rules for one server's connections: public addresses, plus the hosts its owner allowed."""

    def __init__(self, allowed: Iterable[str] = (), resolver: Resolver | None = None) -> None:
        self.allowed = frozenset(host_key(host) for host in allowed if host.strip())
        self._resolve = resolver or system_resolver

    def allows(self, host: str) -> bool:
        return host_key(host) in self.allowed

    def check_host(self, host: str) -> None:
        """Refuse `host` for what it is as written.

        A forbidden IP literal (any form), `localhost` or a name below it, a metadata service's name.
        Names are checked again once resolved."""
        if self.allows(host):
            return
        name = host_key(host)
        if name == "localhost" or name.endswith(".localhost"):
            raise EgressRefused(host, f"{name!r} names this machine (loopback)")
        if name in METADATA_NAMES:
            raise EgressRefused(host, f"{name!r} is a cloud metadata service")
        ip = literal_address(host)
        if ip is not None and (problem := address_problem(ip)) is not None:
            raise EgressRefused(host, problem)

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for `host`.

        `[host]` itself when allowed (resolved as usual then), else every address it resolves to, each
        checked (`EgressRefused` if any is refused)."""
        if (known := self._without_dns(host)) is not None:
            return known
        found = await asyncio.get_running_loop().run_in_executor(None, self._resolve, host.rstrip("."), port)
        return self._checked(host, found, literal=False)

    def addresses_blocking(self, host: str, port: int) -> list[str]:
        """`addresses`, resolving in this thread (for blocking clients run in a worker thread)."""
        if (known := self._without_dns(host)) is not None:
            return known
        return self._checked(host, self._resolve(host.rstrip("."), port), literal=False)

    def _without_dns(self, host: str) -> list[str] | None:
        """`[host]` when allowed, an IP literal's address once checked.

        None when the name must be resolved (`EgressRefused` for a host refused as written)."""
        if self.allows(host):
            return [host]
        self.check_host(host)
        ip = literal_address(host)
        return None if ip is None else self._checked(host, [str(ip)], literal=True)

    def _checked(self, host: str, found: list[str], *, literal: bool) -> list[str]:
        for address in found:
            if (problem := address_problem(ipaddress.ip_address(address.split("%", 1)[0]))) is not None:
                raise EgressRefused(host, problem if literal else f"it resolves to {address}, and {problem}")
        if not found:
            raise OSError(f"{host} resolves to no address")
        return found
