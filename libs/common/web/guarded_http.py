"""httpcore network backends that connect only to the addresses a rule hands them, and httpx2 transports over them.

How every service that fetches URLs someone else chose keeps server-side request forgery out (the
executor with `libs.common.contracts.egress`'s rules for upstreams, the oauth service with its allow-list
for the URLs strangers and upstreams name).

The rule resolves the host, checks what it resolves to and answers the addresses the connection may
use, or raises `Refused`. The backend then connects to one of those very addresses, never resolving
the name again: a second DNS answer (rebinding) cannot swap in another between check and connect. TLS
still names the URL's host (httpcore passes it as the server name of the handshake). Unix sockets are
refused: what is checked is a TCP address.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import httpcore2
import httpx2

__all__ = [
    "Addresses",
    "BlockingAddresses",
    "GuardedBackend",
    "GuardedSyncBackend",
    "Refused",
    "guarded_sync_transport",
    "guarded_transport",
    "shared_tls",
]

Addresses = Callable[[str, int], Awaitable[list[str]]]
"""(host, port) -> the checked addresses to connect to, in order; raises `Refused` or `OSError`."""
BlockingAddresses = Callable[[str, int], list[str]]
"""`Addresses` for a blocking client (resolving in the calling thread)."""

_UNIX_SOCKET = "refused to connect to a unix socket: only TCP addresses are checked"

StreamT = TypeVar("StreamT")


class Refused(httpcore2.ConnectError):
    """A connection the rule refused; httpx2 reports it as a `ConnectError` with this message."""


def _first(addresses: list[str], connect: Callable[[str], StreamT]) -> StreamT:
    """The first address that takes the connection, else the last failure."""
    failure: Exception | None = None
    for address in addresses:
        try:
            return connect(address)
        except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
            failure = exc
    raise failure or httpcore2.ConnectError("no address to connect to")


class GuardedBackend(httpcore2.AsyncNetworkBackend):
    """httpcore's asynchronous backend, connecting only to what `addresses` answers."""

    def __init__(self, addresses: Addresses) -> None:
        self._addresses = addresses
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        try:
            found = await asyncio.wait_for(self._addresses(host, port), timeout)
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"resolving {host} took longer than {timeout} s") from None
        except OSError as exc:
            raise httpcore2.ConnectError(f"cannot resolve {host}: {exc}") from None
        failure: Exception | None = None
        for address in found:  # the first that takes the connection, else the last failure
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore2.ConnectError(f"{host} has no address to connect to")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise Refused(_UNIX_SOCKET)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedSyncBackend(httpcore2.NetworkBackend):
    """httpcore's blocking backend, connecting only to what `addresses` answers."""

    def __init__(self, addresses: BlockingAddresses) -> None:
        self._addresses = addresses
        self._inner = httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.NetworkStream:
        try:
            found = self._addresses(host, port)
        except OSError as exc:
            raise httpcore2.ConnectError(f"cannot resolve {host}: {exc}") from None
        return _first(
            found, lambda address: self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
        )

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.NetworkStream:
        raise Refused(_UNIX_SOCKET)


@functools.cache
def shared_tls(trust_env: bool = True) -> ssl.SSLContext:
    """The process's one verifying TLS context.

    Building one reads the CA bundle again, about 25-45 ms of CPU, and a transport used to build two; the
    settings it reads (`SSL_CERT_FILE`, `SSL_CERT_DIR`) are the process's own and fixed at start. A
    context is safe to share between connections."""
    return httpx2.create_ssl_context(trust_env=trust_env)


def guarded_transport(
    addresses: Addresses,
    *,
    limits: httpx2.Limits | None = None,
    socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    trust_env: bool = True,
) -> httpx2.AsyncHTTPTransport:
    """httpx2's transport over `GuardedBackend(addresses)`."""
    limits = limits or httpx2.Limits()
    transport = httpx2.AsyncHTTPTransport(
        verify=shared_tls(trust_env), limits=limits, socket_options=socket_options, trust_env=trust_env
    )
    # the pool the parent built (no connection yet), rebuilt the same over the checking backend
    transport._pool = httpcore2.AsyncConnectionPool(
        ssl_context=shared_tls(trust_env),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        socket_options=socket_options,
        network_backend=GuardedBackend(addresses),
    )
    return transport


def guarded_sync_transport(addresses: BlockingAddresses) -> httpx2.HTTPTransport:
    """httpx2's blocking transport over `GuardedSyncBackend(addresses)`."""
    transport = httpx2.HTTPTransport(verify=shared_tls())
    transport._pool = httpcore2.ConnectionPool(ssl_context=shared_tls(), network_backend=GuardedSyncBackend(addresses))
    return transport
