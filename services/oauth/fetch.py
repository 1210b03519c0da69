"""Outbound HTTP of the oauth service, guarded against server-side request forgery.

The service fetches URLs other parties choose: a stranger's `client_id` is the URL of its metadata
document, and an upstream's 401 and metadata name the URLs of its authorization server. Without a
guard, either could make Bastion call into its own network (a cloud metadata endpoint, an admin port
on 127.0.0.1, a service on 10.x). So every connection resolves the host first, refuses the addresses
every upstream connection refuses (`libs.common.contracts.egress`: loopback, private, link-local, metadata,
their IPv6 forms, ...), and then connects to the very address it checked (`libs.common.web.guarded_http`,
the executor's too): a second DNS answer (rebinding) cannot swap in another one between check and
connect. Redirects are never followed. An operator lets
named internal hosts through (`AllowList`: host names, `*.suffix` patterns, addresses and CIDR
blocks), or switches the check off altogether (tests, development).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import httpx2

from libs.common.contracts import egress
from libs.common.web.guarded_http import Addresses, Refused, guarded_transport

__all__ = ["AllowList", "ForbiddenAddress", "address_problem", "guarded_client", "why_unreachable"]


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class AllowList:
    """Internal hosts the guard lets through.

    An operator's list of host names (`auth.corp.example`), name patterns (`*.corp.example`: any name
    below it), addresses and CIDR blocks (`10.20.0.0/16`).

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


ForbiddenAddress = Refused
"""The host resolves only to addresses the service may not reach (httpx2 reports a `ConnectError`
with this message)."""


def address_problem(address: str) -> str | None:
    """Why the service may not connect to `address` (an IP address), or None when it may.

    The rule of every upstream connection (`libs.common.contracts.egress`), IPv4 addresses in IPv6 forms
    included."""
    ip = ipaddress.ip_address(address.split("%")[0])  # an IPv6 zone (`fe80::1%eth0`) is not part of it
    kind = egress.address_kind(ip)
    return None if kind is None else f"{address} is {kind}"


def _admitted(allow: AllowList) -> Addresses:
    """The addresses a host resolves to that the service may reach: public ones, and those `allow` lists."""

    async def addresses(host: str, port: int) -> list[str]:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        listed = allow.admits_host(host)
        admitted: list[str] = []
        problems: list[str] = []
        for *_, sockaddr in found:
            address = str(sockaddr[0])
            problem = None if listed or allow.admits_address(address) else address_problem(address)
            if problem is None:
                admitted.append(address)
            else:
                problems.append(problem)
        if not admitted:
            raise ForbiddenAddress(f"refused to connect to {host}: {'; '.join(dict.fromkeys(problems))}")
        return admitted

    return addresses


def guarded_client(
    timeout: float, *, allow_private: bool = False, allow: AllowList | None = None
) -> httpx2.AsyncClient:
    """A client that follows no redirect and reaches public addresses only, plus the hosts `allow` lists.

    `allow_private` switches the check off."""
    transport = None if allow_private else guarded_transport(_admitted(allow or AllowList()), trust_env=False)
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(timeout), follow_redirects=False, transport=transport, trust_env=False
    )


def why_unreachable(exc: httpx2.HTTPError) -> str:
    """A failed fetch in words safe to show: the refusal itself, else the kind of failure (never a URL's query)."""
    if isinstance(exc.__cause__, ForbiddenAddress):
        return str(exc.__cause__)
    return type(exc).__name__
