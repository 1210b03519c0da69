"""DNS-rebinding protection: a gateway bound to loopback answers only to loopback host names.

A web page on evil.example.com whose name is re-pointed at 127.0.0.1 can make a browser send
requests to a local gateway; the browser then sends `Host: evil.example.com` (and that `Origin`).
Refusing unknown hosts closes that door, as the MCP transport spec asks of local servers.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["HostGuard"]

_LOOPBACK_BINDS = frozenset({"127.0.0.1", "localhost", "::1"})
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _hostname(value: str) -> str:
    """`host[:port]` or `[v6]:port` → the lower-case host part."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostGuard:
    def __init__(self, bind_host: str, allowed_hosts: list[str]) -> None:
        allowed = {h.lower() for h in allowed_hosts}
        if not allowed and bind_host in _LOOPBACK_BINDS:
            allowed = set(_LOOPBACK_NAMES)
        self._allowed: frozenset[str] | None = frozenset(allowed) if allowed else None

    def problem(self, host: str | None, origin: str | None) -> str | None:
        """Why this request must be refused, or None."""
        if self._allowed is None:
            return None
        if host is not None and _hostname(host) not in self._allowed:
            return f"host {_hostname(host)!r} is not allowed here (see BASTION_ALLOWED_HOSTS)"
        if origin and origin != "null":
            origin_host = urlsplit(origin).hostname or ""
            if origin_host.lower() not in self._allowed and f"[{origin_host}]" not in self._allowed:
                return f"origin {origin!r} is not allowed here (see BASTION_ALLOWED_HOSTS)"
        return None
