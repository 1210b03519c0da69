"""Which addresses Bastion's HTTP connections to upstreams may reach (server-side request forgery).

A configured URL is whoever wrote the configuration's choice, and so is every redirect and every URL
an OpenAPI document names: without a rule, `http://169.254.169.254/...` reads a cloud's instance
credentials and `http://127.0.0.1:<admin port>/openapi.json` turns the admin API into tools. So a
connection may reach public addresses only: never loopback, link-local, private, shared (CGNAT),
unspecified, multicast or otherwise special-use addresses, nor those written as IPv4-mapped,
-compatible, 6to4 or NAT64 IPv6 forms, nor the names of cloud metadata services, unless an owner
lets that exact host through (`allow_private_hosts` of the server, or the configuration's
`egress.allow_private_hosts`).

Names are checked by what they resolve to when the connection is made, every address of the
answer, and the connection goes to an address that was checked (`EgressRules.addresses`): a second DNS
answer cannot swap in another between the check and the connection. An allowed host is matched as
written in URLs (case and a trailing dot aside; an IP literal in its canonical form), so allowing
`127.0.0.1` does not allow `127.1` or `2130706433`, nor a name that resolves to it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ALLOW_HINT",
    "EgressRefused",
    "EgressRules",
    "EgressSection",
    "Resolver",
    "address_kind",
    "address_problem",
    "check_allowed_hosts",
    "host_key",
    "literal_address",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

Resolver = Callable[[str, int], list[str]]
"""(host, port) -> the addresses the host resolves to, blocking (`system_resolver` by default; the
asynchronous path runs it in a worker thread, as asyncio's own `getaddrinfo` does)."""

ALLOW_HINT: Final = (
    "an owner allows it by adding {host!r} (the host exactly as the URL writes it) to the server's "
    "'allow_private_hosts' or to the configuration's 'egress.allow_private_hosts'"
)

_SHARED: Final = ipaddress.ip_network("100.64.0.0/10")
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
_COMPAT: Final = ipaddress.ip_network("::/96")
_METADATA_ADDRESSES: Final = frozenset(
    map(ipaddress.ip_address, ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200"))
)
# resolve to a metadata address on the cloud itself; refused by name too, before any DNS answer
_METADATA_NAMES: Final = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
# what inet_aton reads as an IPv4 address: `127.1`, `0x7f.1`, `2130706433`, `0177.0.0.1`
_LEGACY_IPV4: Final = re.compile(r"\A(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}\Z")
_HOST_NAME: Final = re.compile(r"\A[a-z0-9_]([a-z0-9_-]{0,62}\.)*[a-z0-9_-]{1,63}\Z")


def check_allowed_hosts(hosts: list[str]) -> list[str]:
    """`hosts` when each is a host as a URL writes it (a name or an IP literal: no scheme, port or
    path), else `ValueError` naming the first that is not."""
    for i, host in enumerate(hosts):
        key = host_key(host)
        if not _HOST_NAME.match(key) and literal_address(key) is None:
            raise ValueError(
                f"entry {i} is not a host: give the name or IP address exactly as the URL writes it "
                "(no scheme, port or path), e.g. '10.0.0.5' or 'mcp.internal'"
            )
    return hosts


class EgressSection(BaseModel):
    """The configuration's `egress` section."""

    model_config = ConfigDict(extra="forbid")

    allow_private_hosts: list[str] = Field(default_factory=list)
    """Hosts, exactly as upstream URLs write them (`10.0.0.5`, `mcp.internal`, `[fd00::5]`), every
    server's HTTP connections may reach although they are (or resolve to) loopback, private,
    link-local or other non-public addresses (docs/configuration.md, "Egress")."""

    @field_validator("allow_private_hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        return check_allowed_hosts(hosts)


class EgressRefused(ConnectionRefusedError):
    """A connection the rules refuse; the message names the host, the address and how to allow it.
    A `ConnectionRefusedError`, so whatever reports a refused connection reports this one (a lean
    call's, `services.executor.error_mapping`): the upstream is unreachable, the request not sent."""

    def __init__(self, host: str, why: str) -> None:
        written = host.strip().removeprefix("[").removesuffix("]")
        super().__init__(f"refused to connect to {host}: {why}; {ALLOW_HINT.format(host=written)}")
        self.host = host


def host_key(host: str) -> str:
    """`host` as allow-lists compare it: lower case, without brackets or trailing dots, an IP
    literal (IPv4 dotted quad or IPv6) in its canonical form."""
    name = host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def literal_address(host: str) -> IPAddress | None:
    """The address `host` is when it is an IP literal, in any form a resolver reads as one
    (`127.1`, `0x7f.0.0.1`, `2130706433`, `[::ffff:127.0.0.1]`); None for a name."""
    name = host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    try:
        return ipaddress.ip_address(name.split("%", 1)[0])  # an IPv6 zone (`fe80::1%eth0`) names no other address
    except ValueError:
        pass
    if _LEGACY_IPV4.match(name):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return None
    return None


def _embedded(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, compatible, 6to4, NAT64), which is where it goes."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _COMPAT and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_kind(ip: IPAddress) -> str | None:
    """What `ip` is when a connection may not reach it (`a loopback address`, `127.0.0.1 in IPv6
    form: 127.0.0.1 is a loopback address`), or None when it may (a public address)."""
    if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded(ip)) is not None:
        problem = address_problem(inner)
        return None if problem is None else f"{inner} in IPv6 form: {problem}"
    for kind, hit in (
        ("a cloud metadata", ip in _METADATA_ADDRESSES),
        ("a loopback", ip.is_loopback),
        ("an unspecified", ip.is_unspecified),
        ("a link-local", ip.is_link_local),
        ("a multicast", ip.is_multicast),
        ("a shared (carrier-grade NAT)", ip in _SHARED),
        ("a reserved", ip.is_reserved),
        ("a private", ip.is_private),
        ("a non-public", not ip.is_global),
    ):
        if hit:
            return f"{kind} address"
    return None


def address_problem(ip: IPAddress) -> str | None:
    """Why a connection may not reach `ip`, or None when it may (a public address)."""
    kind = address_kind(ip)
    return None if kind is None else f"{ip} is {kind}"


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
        """Refuse `host` for what it is as written: a forbidden IP literal (any form), `localhost`
        or a name below it, a metadata service's name. Names are checked again once resolved."""
        if self.allows(host):
            return
        name = host_key(host)
        if name == "localhost" or name.endswith(".localhost"):
            raise EgressRefused(host, f"{name!r} names this machine (loopback)")
        if name in _METADATA_NAMES:
            raise EgressRefused(host, f"{name!r} is a cloud metadata service")
        ip = literal_address(host)
        if ip is not None and (problem := address_problem(ip)) is not None:
            raise EgressRefused(host, problem)

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for `host`: `[host]` itself when allowed (resolved as usual
        then), else every address it resolves to, each checked (`EgressRefused` if any is refused)."""
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
        """`[host]` when allowed, an IP literal's address once checked; None when the name must be
        resolved (`EgressRefused` for a host refused as written)."""
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
