"""One provider's HTTP: keep-alive POSTs on llhttp pools, or httpx2 where a proxy must carry them.

httpx2 spent ~1,000 µs of the executor's CPU per completion on a POST (its pool, anyio streams and
h11; docs/benchmarks.md, LLM section); the lean pool the tool side uses for its upstreams
(`upstreams.mcp.http1.HttpPool`: ~20 µs) does what a provider call needs: a POST of known length,
the answer whole or as it streams. It connects only where the egress rules allow (each address
checked, as `upstreams.egress_guard` does for httpx2) and trusts the process's shared TLS context.
A provider the environment's proxy settings cover (HTTP(S)_PROXY, not exempted by NO_PROXY) keeps
the httpx2 client every provider had before (the lean pool speaks to origins only).

Both answer as `Answer`s and fail as `Unreachable` (nothing was answered: connection refused, reset
or closed before an answer; an egress refusal carries its reason), `Broken` (the answer stopped
midway) or `TimeoutError` (no answer, or no next piece of it, within the provider's timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx2

from libs.common.web.egress_rules import EgressRefused, EgressRules
from libs.common.web.guarded_http import shared_tls

from .upstreams.egress_guard import guarded_transport, proxied_hooks, refusal_in
from .upstreams.mcp.http1 import HttpPool
from .upstreams.mcp.http1_connection import BodyTooLarge, HttpClosed, Response
from .upstreams.mcp.lean import _proxied

__all__ = ["MAX_ANSWER_BYTES", "Answer", "Broken", "ProviderHttp", "Unreachable"]

MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""A non-streamed answer (or error body) read at most; a provider sending more is broken."""
_POOLS = 64
"""Endpoint URLs one provider keeps pools for (Gemini, Bedrock, Azure name the model in the path)."""
_CONNECTIONS = 256
"""Connections one endpoint's pool opens at most (concurrent completions to it beyond wait)."""
_CONNECT_TIMEOUT = 10.0
"""Seconds a connection attempt may take (less than a slow completion may): a host that drops the
connection silently is failed over from in seconds, not after the provider's whole `timeout`."""


class Unreachable(Exception):
    """No answer at all: the provider could not be reached or closed the connection first."""


class Broken(Exception):
    """The answer began and then the connection broke."""


class Answer(Protocol):
    """A provider's answer: status and headers at once, the body whole or in pieces as it arrives."""

    status: int
    headers: Mapping[str, str]
    """Lower-case names."""

    async def read(self) -> bytes:
        """The whole body (`Broken` past `MAX_ANSWER_BYTES`)."""

    def pieces(self) -> AsyncIterator[bytes]:
        """The body as it arrives, each piece within the timeout."""


@dataclass
class _LeanAnswer:
    status: int
    headers: Mapping[str, str]
    _response: Response
    _timeout: float

    async def read(self) -> bytes:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._response.read(MAX_ANSWER_BYTES)
        except BodyTooLarge:
            raise Broken(f"an answer over {MAX_ANSWER_BYTES:,} bytes") from None
        except TimeoutError:  # an OSError too: not a broken connection
            raise
        except (HttpClosed, OSError) as exc:
            raise Broken(type(exc).__name__) from None

    async def pieces(self) -> AsyncIterator[bytes]:
        pieces = self._response.iter_any()
        while True:
            try:
                async with asyncio.timeout(self._timeout):
                    piece = await anext(pieces)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise
            except (HttpClosed, OSError) as exc:
                raise Broken(type(exc).__name__) from None
            yield piece


@dataclass
class _HttpxAnswer:
    status: int
    headers: Mapping[str, str]
    _response: httpx2.Response

    async def read(self) -> bytes:
        try:
            return await self._response.aread()
        except httpx2.TimeoutException:
            raise TimeoutError from None
        except httpx2.TransportError as exc:
            raise Broken(type(exc).__name__) from None

    async def pieces(self) -> AsyncIterator[bytes]:
        try:
            async for piece in self._response.aiter_bytes():
                yield piece
        except httpx2.TimeoutException:
            raise TimeoutError from None
        except httpx2.TransportError as exc:
            raise Broken(type(exc).__name__) from None


class ProviderHttp:
    """POSTs to one provider's endpoints within `timeout` seconds per wait."""

    def __init__(self, egress: EgressRules, timeout: float) -> None:
        self._egress = egress
        self._timeout = timeout
        self._pools: dict[str, HttpPool | None] = {}
        self._client: httpx2.AsyncClient | None = None

    @contextlib.asynccontextmanager
    async def post(self, url: str, content: bytes, headers: Mapping[str, str]) -> AsyncIterator[Answer]:
        pool = self._pool(url)
        if pool is None:
            async with self._proxied(url, content, headers) as answer:
                yield answer
            return
        try:
            async with asyncio.timeout(self._timeout):
                post = pool.post(content, headers)
                response = await post.__aenter__()
        except EgressRefused as exc:
            raise Unreachable(str(exc)) from None
        except TimeoutError:
            raise
        except (HttpClosed, OSError) as exc:
            raise Unreachable(type(exc).__name__) from None
        try:
            yield _LeanAnswer(response.status, response.headers, response, self._timeout)
        finally:
            await post.__aexit__(None, None, None)

    @contextlib.asynccontextmanager
    async def _proxied(self, url: str, content: bytes, headers: Mapping[str, str]) -> AsyncIterator[Answer]:
        if self._client is None:
            self._client = httpx2.AsyncClient(
                timeout=httpx2.Timeout(self._timeout, connect=min(self._timeout, _CONNECT_TIMEOUT)),
                transport=guarded_transport(self._egress),
                event_hooks={"request": proxied_hooks(self._egress, blocking=False)},
            )
        try:
            async with self._client.stream("POST", url, content=content, headers=dict(headers)) as response:
                yield _HttpxAnswer(response.status_code, response.headers, response)
        except httpx2.TimeoutException:
            raise TimeoutError from None
        except (httpx2.ConnectError, httpx2.RemoteProtocolError, httpx2.ReadError, httpx2.WriteError) as exc:
            refused = refusal_in(exc)  # the egress rules' reason says how an owner allows the host
            raise Unreachable(str(refused) if refused is not None else type(exc).__name__) from None

    def _pool(self, url: str) -> HttpPool | None:
        """The pool for `url`; None when a proxy must carry it.

        Decided once per URL: reading the environment's proxy settings walks every variable (~300 µs)."""
        if url in self._pools:
            return self._pools[url]
        if len(self._pools) >= _POOLS:  # the least recently created goes; its connections close
            oldest = self._pools.pop(next(iter(self._pools)))
            if oldest is not None:
                asyncio.get_running_loop().create_task(oldest.close())
        pool = self._pools[url] = (
            None
            if _proxied(url)
            else HttpPool(
                url,
                ssl_context=shared_tls(),
                limit=_CONNECTIONS,
                addresses=self._egress.addresses,
                connect_timeout=min(self._timeout, _CONNECT_TIMEOUT),
            )
        )
        return pool

    async def aclose(self) -> None:
        for pool in self._pools.values():
            if pool is not None:
                await pool.close()
        self._pools.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
