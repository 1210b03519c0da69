"""Headers a request to `/mcp` may send once only: a proxy in front and the app behind could each
read a different copy. `Host` and `Origin`, which `hosts.HostGuard` checks.
"""

from __future__ import annotations

__all__ = ["repeated_headers"]

_SINGLE = (b"host", b"origin")


def repeated_headers(raw_headers: list[tuple[bytes, bytes]]) -> tuple[str, ...]:
    """Which of the headers that must be single the request sent more than once (ASGI header
    names are lower-case)."""
    names = [name for name, _ in raw_headers]
    return tuple(h.decode() for h in _SINGLE if names.count(h) > 1)
