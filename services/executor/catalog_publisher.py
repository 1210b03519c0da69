"""Publishing one upstream's catalog entry: its status and tools, plus health and breaker state.

Status changes (ready / unavailable, a new listing) are published when the owning task says so.
Health and breaker changes happen on the call path, possibly thousands of times a second, so they
only mark the entry dirty; one task republishes the last status at most every
`HEALTH_PUBLISH_EVERY` seconds, and only when something a consumer would see changed. The same
task refreshes a "ready" every `heartbeat` seconds, so other executor replicas can tell it is still
served here (`catalog_store`), and retries an entry that did not land (deferred to another replica's
"ready", or KV failed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

from libs.common.contracts.gateway_tasks import HostedTask
from libs.common.contracts.messages import ServerCatalog
from libs.common.runtime.tasks import cancel_and_wait

from .breaker import CircuitBreaker
from .resilience import health_of
from .tools import ToolSet
from .upstreams.interface import Features

__all__ = ["HEALTH_PUBLISH_EVERY", "CatalogPublisher", "Snapshot"]

HEALTH_PUBLISH_EVERY = 1.0


class Snapshot(NamedTuple):
    tools: ToolSet | None
    protocol_version: str | None
    connected: bool
    breaker: CircuitBreaker
    features: Features = Features()
    namespace: bool = True
    needs_auth: bool = False
    withheld: tuple[str, ...] = ()
    hosted_tasks: Mapping[str, HostedTask] = {}
    per_user: bool = False


class CatalogPublisher:
    def __init__(
        self,
        name: str,
        send: Callable[[ServerCatalog], Awaitable[bool]],
        snapshot: Callable[[], Snapshot],
        heartbeat: float = 10.0,
    ) -> None:
        self.name = name
        self._heartbeat = heartbeat
        self._send = send
        self._snapshot = snapshot
        self._lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._status: tuple[str, str | None, list[str]] | None = None
        """The last status the owner published; health-only updates repeat it."""
        self._published: tuple[Any, ...] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        """Ends the republish loop even when its cancellation was swallowed (nats-py's publish
        swallows a CancelledError that reaches it while flushing)."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._republish(), name=f"upstream:{self.name}:health")

    async def stop(self) -> None:
        self._stopping = True
        self._dirty.set()
        await cancel_and_wait(self._task)

    def dirty(self) -> None:
        """Health or breaker state may have changed: republish soon (rate-limited)."""
        self._dirty.set()

    async def publish(
        self, status: str, error: str | None = None, stderr_tail: list[str] | None = None, *, refresh: bool = False
    ) -> None:
        """Publish `status` (with `error`, and what the server last wrote on stderr when it failed); `refresh`.

        Even when it is what was last published (a heartbeat)."""
        stderr_tail = stderr_tail or []
        self._status = (status, error, stderr_tail)
        async with self._lock:  # a health update must not overtake a newer listing
            key, catalog = self.entry(status, error, stderr_tail)
            if key == self._published and not refresh:
                return
            if await self._send(catalog):
                self._published = key

    def entry(
        self, status: str, error: str | None = None, stderr_tail: list[str] | None = None
    ) -> tuple[tuple[Any, ...], ServerCatalog]:
        """The entry `status` publishes now, and what of it a consumer sees (equal: nothing to publish)."""
        stderr_tail = stderr_tail or []
        snap = self._snapshot()
        tools = snap.tools.catalog() if status == "ready" and snap.tools is not None else []
        health = health_of(snap.connected, snap.breaker, snap.needs_auth)
        breaker = snap.breaker.status()
        features = snap.features if status == "ready" else Features()
        withheld = list(snap.withheld) if status == "ready" else []
        key = (
            status,
            error,
            stderr_tail,
            health,
            breaker.state,
            snap.protocol_version,
            [t.definition for t in tools],
            features,
            snap.namespace,
            withheld,
            dict(snap.hosted_tasks),
        )
        catalog = ServerCatalog(
            server=self.name,
            status=status,
            error=error,
            stderr_tail=stderr_tail,
            health=health.value,
            breaker=breaker,
            protocol_version=snap.protocol_version,
            tools=tools,
            namespace=snap.namespace,
            per_user=snap.per_user,
            withheld=withheld,
            hosted_tasks=dict(snap.hosted_tasks),
            **features.published(),
        )
        return key, catalog

    async def _republish(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat):
                    await self._dirty.wait()
            if self._stopping:
                return
            beat = not self._dirty.is_set()
            self._dirty.clear()
            if self._status is not None:
                status, error, stderr_tail = self._status
                await self.publish(status, error, stderr_tail, refresh=beat and status == "ready")
            await asyncio.sleep(HEALTH_PUBLISH_EVERY)
