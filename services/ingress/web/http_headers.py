"""Headers a request to ingress may send once only, whichever route it takes (`/mcp`, `/v1`, the admin API).

A proxy in front and the app behind could each read a different copy.

`Host` and `Origin` (`hosts.HostGuard` checks them), and `Authorization`: with two credentials, a
proxy that checks the first would let the second, which the app reads, through unchecked.
"""

from __future__ import annotations

__all__ = ["REPEATED_AUTHORIZATION", "repeated_headers"]

_SINGLE = (b"host", b"origin", b"authorization")
REPEATED_AUTHORIZATION = "the Authorization header appears more than once; send exactly one credential"


def repeated_headers(raw_headers: list[tuple[bytes, bytes]]) -> tuple[str, ...]:
    """Which of the headers that must be single the request sent more than once (ASGI header names are lower-case)."""
    names = [name for name, _ in raw_headers]
    return tuple(h.decode() for h in _SINGLE if names.count(h) > 1)
