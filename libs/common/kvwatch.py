"""Keep an in-memory view of a JetStream KV bucket up to date.

Every replica of every service builds its state (keys, catalog, servers) from KV watches, so a
change made anywhere reaches all of them within milliseconds, and a replica that starts later
catches up from the bucket's current values.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.js import JetStreamContext
from pydantic import BaseModel, ValidationError

from .nats import kv_bucket

__all__ = ["BucketWatch", "decode_value"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


def decode_value(model: type[M], value: bytes, what: str) -> M | None:
    """A KV value as `model`, or None (logged) when it is malformed: one bad record written by
    hand or by an older version must not take a watcher, let alone a service, down."""
    try:
        return model.model_validate_json(value)
    except ValidationError as exc:
        log.error("ignoring malformed %s: %s", what, exc.errors()[0]["msg"])
        return None


OnPut = Callable[[str, bytes, int], Awaitable[None] | None]
OnDelete = Callable[[str], Awaitable[None] | None]


class BucketWatch:
    """Runs `on_put(key, value, revision)` / `on_delete(key)` for every change, forever.

    `ready` is set once the bucket's existing values have been delivered, so a service can
    refuse traffic until its view is complete. A watch that breaks (NATS restart, consumer
    expired) is re-created; re-delivered values are idempotent puts.
    """

    def __init__(self, js: JetStreamContext, bucket: str, on_put: OnPut, on_delete: OnDelete) -> None:
        self._js, self._bucket = js, bucket
        self._on_put, self._on_delete = on_put, on_delete
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 10.0) -> None:
        self._task = asyncio.create_task(self._run(), name=f"watch:{self._bucket}")
        await asyncio.wait_for(self.ready.wait(), timeout)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                kv = await kv_bucket(self._js, self._bucket)
                watcher = await kv.watchall()
                try:
                    async for entry in watcher:
                        backoff = 0.2
                        if entry is None:  # end of the initial values
                            self.ready.set()
                            continue
                        if entry.operation in ("DEL", "PURGE") or entry.value is None:
                            result = self._on_delete(entry.key)
                        else:
                            result = self._on_put(entry.key, entry.value, entry.revision or 0)
                        if asyncio.iscoroutine(result):
                            await result
                finally:
                    with contextlib.suppress(Exception):
                        await watcher.stop()
                await asyncio.sleep(backoff)  # the watch ended without an error: start over
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watch on %s broke (%s); re-creating in %.1fs", self._bucket, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
