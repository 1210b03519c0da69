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
answer, and the connection goes to an address that was checked (`EgressRules.addresses`, in
`libs.common.web.egress_rules`: the part that resolves): a second DNS
answer cannot swap in another between the check and the connection. An allowed host is matched as
written in URLs (case and a trailing dot aside; an IP literal in its canonical form), so allowing
`127.0.0.1` does not allow `127.1` or `2130706433`, nor a name that resolves to it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ALLOW_HINT",
    "EgressSection",
    "address_kind",
    "address_problem",
    "check_allowed_hosts",
    "host_key",
    "literal_address",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

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
METADATA_NAMES: Final = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
# what inet_aton reads as an IPv4 address: `127.1`, `0x7f.1`, `2130706433`, `0177.0.0.1`
_LEGACY_IPV4: Final = re.compile(r"\A(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}\Z")
_HOST_NAME: Final = re.compile(r"\A[a-z0-9_]([a-z0-9_-]{0,62}\.)*[a-z0-9_-]{1,63}\Z")


def check_allowed_hosts(hosts: list[str]) -> list[str]:
    """`hosts` when each is a host as a URL writes it (a name or an IP literal: no scheme, port or path).

    Else `ValueError` naming the first that is not."""
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


def host_key(host: str) -> str:
    """`host` as allow-lists compare it.

    Lower case, without brackets or trailing dots, an IP literal (IPv4 dotted quad or IPv6) in its
    canonical form."""
    name = host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def literal_address(host: str) -> IPAddress | None:
    """The address `host` is when it is an IP literal, in any form a resolver reads as one.

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
    """What `ip` is when a connection may not reach it.

    (`a loopback address`, `127.0.0.1 in IPv6 form: 127.0.0.1 is a loopback address`), or None when it
    may (a public address)."""
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
