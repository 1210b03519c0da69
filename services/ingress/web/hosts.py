"""DNS-rebinding protection: `/mcp` answers only under host names it was told to serve.

A web page on evil.example.com whose name is re-pointed at 127.0.0.1 can make a browser send
requests to a local gateway; the browser then sends `Host: evil.example.com` (and that `Origin`).
Refusing unknown hosts closes that door, as the MCP transport spec asks of servers.

Bound to loopback, the loopback names are allowed by default. Bound to any other address the
guard fails closed: it needs an allow-list (`BASTION_ALLOWED_HOSTS`) or the explicit opt-out
`BASTION_ALLOW_ANY_HOST` (a gateway behind a proxy that checks hosts itself).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from libs.common.settings import unguarded_bind_problem

__all__ = ["HostGuard"]

_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_SEEN_HOSTS = 1024
"""Spellings of allowed hosts remembered (`host`, `host:port`, case variants): a client can make up
many spellings of one allowed name, so the set stops growing at this size."""


def _hostname(value: str) -> str:
    """`host[:port]` or `[v6]:port` → the lower-case host part."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostGuard:
    def __init__(self, bind_host: str, allowed_hosts: list[str], allow_any_host: bool = False) -> None:
        if (problem := unguarded_bind_problem(bind_host, allowed_hosts, allow_any_host)) is not None:
            raise ValueError(problem)
        allowed = {h.lower() for h in allowed_hosts}
        if not allowed and not allow_any_host:
            allowed = set(_LOOPBACK_NAMES)
        self._allowed: frozenset[str] | None = frozenset(allowed) if allowed else None
        self._seen: set[str] = set()
        """`Host` values exactly as sent that were allowed: the next request sending one costs a set
        lookup, not a parse. Only allowed values are kept, so their number is bounded by the allow-list."""

    def problem(self, host: str | None, origin: str | None, repeated: tuple[str, ...] = ()) -> str | None:
        """Why this request must be refused, or None.

        `repeated`: which of host / origin the request sent more than once (a proxy and the app could
        each read a different one)."""
        if repeated:
            return f"the {' and '.join(repeated)} header appears more than once"
        if self._allowed is None:
            return None
        if host is not None and host not in self._seen:
            if _hostname(host) not in self._allowed:
                return f"host {_hostname(host)!r} is not allowed here (see BASTION_ALLOWED_HOSTS)"
            if len(self._seen) < _SEEN_HOSTS:
                self._seen.add(host)
        if origin is not None:
            return self._origin_problem(origin)
        return None

    def _origin_problem(self, origin: str) -> str | None:
        # "null" is what sandboxed frames and file:// pages send: a browser page all the same
        try:
            origin_host = urlsplit(origin).hostname or ""
        except ValueError:
            return f"origin {origin[:100]!r} is not a valid URL"
        allowed = self._allowed or frozenset()
        if origin_host.lower() not in allowed and f"[{origin_host}]" not in allowed:
            return f"origin {origin[:100]!r} is not allowed here (see BASTION_ALLOWED_HOSTS)"
        return None
