"""Outbound HTTP of the oauth service, guarded against server-side request forgery.

The service fetches URLs other parties choose: a stranger's `client_id` is the URL of its metadata
document, and an upstream's 401 and metadata name the URLs of its authorization server. Without a
guard, either could make Bastion call into its own network (a cloud metadata endpoint, an admin port
on 127.0.0.1, a service on 10.x). So every connection resolves the host first, refuses loopback,
private, link-local, multicast, reserved and unspecified addresses, and then connects to the very
address it checked: a second DNS answer (rebinding) cannot swap in another one between check and
connect. Redirects are never followed. An operator lets named internal hosts through (`AllowList`:
host names, `*.suffix` patterns, addresses and CIDR blocks), or switches the check off altogether
(tests, development).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import httpcore2
import httpx2

__all__ = ["AllowList", "ForbiddenAddress", "address_problem", "guarded_client", "why_unreachable"]


_SHARED = ipaddress.ip_network("100.64.0.0/10")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class AllowList:
    """Internal hosts the guard lets through: an operator's list of host names (`auth.corp.example`),
    name patterns (`*.corp.example`: any name below it), addresses and CIDR blocks (`10.20.0.0/16`).

    A listed name may resolve to any address (DNS for it is the operator's); a listed address or block
    admits any name that resolves into it. Everything else is still refused."""

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                if entry.startswith("*."):
                    suffixes.append(entry[1:])
                else:
                    names.add(entry)
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    def admits_host(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        return name in self.names or any(name.endswith(suffix) for suffix in self.suffixes)

    def admits_address(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)


class ForbiddenAddress(httpcore2.ConnectError):
    """The host resolves only to addresses the service may not reach (httpx2 reports a `ConnectError`
    with this message)."""


def address_problem(address: str) -> str | None:
    """Why the service may not connect to `address` (an IP address), or None when it may."""
    ip = ipaddress.ip_address(address.split("%")[0])  # an IPv6 zone (`fe80::1%eth0`) is not part of it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for kind, hit in (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("shared (carrier-grade NAT)", ip in _SHARED),
        ("private", ip.is_private),
    ):
        if hit:
            return f"{address} is a {kind} address"
    return None


class _GuardedBackend(httpcore2.AsyncNetworkBackend):
    """Resolves, checks, then connects to the checked address (never resolving twice)."""

    def __init__(self, allow: AllowList) -> None:
        self._inner = httpcore2.AnyIOBackend()
        self._allow = allow

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        try:
            found = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
            )
        except (OSError, TimeoutError) as exc:
            raise httpcore2.ConnectError(f"cannot resolve {host}: {exc}") from None
        problems: list[str] = []
        listed = self._allow.admits_host(host)
        for *_, sockaddr in found:
            address = str(sockaddr[0])
            problem = None if listed or self._allow.admits_address(address) else address_problem(address)
            if problem is None:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            problems.append(problem)
        raise ForbiddenAddress(f"refused to connect to {host}: {'; '.join(dict.fromkeys(problems))}")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise ForbiddenAddress("refused to connect to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx2.AsyncHTTPTransport):
    def __init__(self, allow: AllowList) -> None:
        super().__init__(trust_env=False)
        # the pool the parent built, with the checking backend instead of the default one
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(trust_env=False), network_backend=_GuardedBackend(allow)
        )


def guarded_client(
    timeout: float, *, allow_private: bool = False, allow: AllowList | None = None
) -> httpx2.AsyncClient:
    """A client that follows no redirect and reaches public addresses only, plus the hosts `allow`
    lists; `allow_private` switches the check off."""
    transport = None if allow_private else _GuardedTransport(allow or AllowList())
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(timeout), follow_redirects=False, transport=transport, trust_env=False
    )


def why_unreachable(exc: httpx2.HTTPError) -> str:
    """A failed fetch in words safe to show: the refusal itself, else the kind of failure (never a URL's query)."""
    if isinstance(exc.__cause__, ForbiddenAddress):
        return str(exc.__cause__)
    return type(exc).__name__
