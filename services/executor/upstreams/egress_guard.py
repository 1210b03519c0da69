"""The executor's HTTP connections to upstreams, held to `libs.common.contracts.egress`'s rules.

Every httpx2 client the executor builds for an upstream (streamable HTTP, SSE, OpenAPI documents and
REST calls, OAuth client-credentials tokens: `mcp.http_client`, `openapi.source`) connects
through `libs.common.web.guarded_http`'s backend, which asks the rules for the host's checked addresses
and connects to one of them. Each redirect hop is a new connection, so each is checked. The lean
HTTP/1 pool (`http1.HttpPool`) takes `EgressRules.addresses` as its way of finding addresses.

Requests an environment proxy carries are connected to the proxy, which resolves the name itself:
for those the host is checked as written (`check_request`: IP literals in any form, `localhost`,
metadata names) before the request leaves.
"""

from __future__ import annotations

import functools
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

import httpcore2
import httpx2

from libs.common.web.egress_rules import EgressRefused, EgressRules
from libs.common.web.guarded_http import Addresses, BlockingAddresses, Refused
from libs.common.web.guarded_http import guarded_sync_transport as checked_sync_transport
from libs.common.web.guarded_http import guarded_transport as checked_transport

__all__ = [
    "EgressRefusedError",
    "check_request",
    "check_request_host",
    "guarded_sync_transport",
    "guarded_transport",
    "proxied_hooks",
    "refusal_in",
]


EgressRefusedError = Refused
"""A connection the egress rules refused; httpx2 reports it as a `ConnectError` with this message."""


def refusal_in(exc: BaseException) -> EgressRefusedError | None:
    """The egress refusal behind `exc` (an httpx2 error wraps httpcore's as its cause), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, EgressRefusedError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def check_request_host(rules: EgressRules, request: httpx2.Request) -> None:
    """An httpx2 request hook: the host as written, before any proxy is asked to reach it."""
    try:
        rules.check_host(request.url.host)
    except EgressRefused as exc:
        raise httpx2.ConnectError(str(exc), request=request) from EgressRefusedError(str(exc))


async def check_request(rules: EgressRules, request: httpx2.Request) -> None:
    """`check_request_host` for asynchronous clients."""
    check_request_host(rules, request)


def proxied_hooks(rules: EgressRules, *, blocking: bool) -> list[Callable[[httpx2.Request], Any]]:
    """The request hooks of a client.

    `check_request` when the environment names a proxy (a proxy resolves the names it is asked for, so
    the host is checked as written before it goes), else none."""
    if not urllib.request.getproxies_environment():
        return []
    return [functools.partial(check_request_host if blocking else check_request, rules)]


def _addresses(rules: EgressRules) -> Addresses:
    async def addresses(host: str, port: int) -> list[str]:
        try:
            return await rules.addresses(host, port)
        except EgressRefused as exc:
            raise EgressRefusedError(str(exc)) from None

    return addresses


def _addresses_blocking(rules: EgressRules) -> BlockingAddresses:
    def addresses(host: str, port: int) -> list[str]:
        try:
            return rules.addresses_blocking(host, port)
        except EgressRefused as exc:
            raise EgressRefusedError(str(exc)) from None

    return addresses


def guarded_transport(
    rules: EgressRules,
    *,
    limits: httpx2.Limits | None = None,
    socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
) -> httpx2.AsyncHTTPTransport:
    """httpx2's transport, connecting only where `rules` allow."""
    return checked_transport(_addresses(rules), limits=limits, socket_options=socket_options)


def guarded_sync_transport(rules: EgressRules) -> httpx2.HTTPTransport:
    """httpx2's blocking transport, connecting only where `rules` allow.

    (OpenAPI documents are read in a worker thread)."""
    return checked_sync_transport(_addresses_blocking(rules))
