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
from typing import Any, TypeVar

from nats.aio.client import Client as NATS
from nats.js.errors import BucketNotFoundError
from pydantic import BaseModel, ValidationError
from tenacity import RetryCallState, retry_if_exception

from libs.common.bus.starting import patient_start
from libs.common.runtime.patience import patiently
from libs.common.runtime.tasks import cancel_and_wait, cancel_requested, stop_if_cancelled

__all__ = ["BucketWatch", "decode_value"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

STOP_WITHIN = 2.0
"""Seconds a watch's end may wait for its consumer and its unsubscribe before it lets them go."""
READY_WITHIN = 10.0
"""Seconds `BucketWatch.start` waits for a bucket's current content before it logs that it still waits."""


def decode_value(model: type[M], value: bytes, what: str) -> M | None:
    """A KV value as `model`, or None (logged) when it is malformed.

    One bad record written by hand or by an older version must not take a watcher, let alone a service,
    down."""
    try:
        return model.model_validate_json(value)
    except ValidationError as exc:
        log.error("ignoring malformed %s: %s", what, exc.errors()[0]["msg"])
        return None


OnPut = Callable[[str, bytes, int], Awaitable[None] | None]
OnDelete = Callable[[str], Awaitable[None] | None]

MISSING_RETRY = 0.5
"""Seconds between looks for a bucket that does not exist yet."""
RECONNECT_CHECK = 0.25
"""Seconds between looks at the connection's reconnect count (a local counter, no round trip)."""
LATE_VALUES = 2.0
"""Seconds the view waits, after nats-py's end-of-values marker, for values it knows were in the bucket
when the watch began but that have not arrived (see `_consume`), before calling itself complete anyway."""

_unless_stopping = retry_if_exception(lambda exc: isinstance(exc, Exception) and not cancel_requested())
"""A watch that broke is re-created, unless its task is being stopped and the break was the stop's
cancel come out as another error."""


class BucketWatch:
    """Runs `on_put(key, value, revision)` / `on_delete(key)` for every change, forever.

    `ready` is set once the bucket's existing values have been delivered, so a service can
    refuse traffic until its view is complete. A watch that breaks (consumer expired, stream
    error) is re-created, and so is one that lived through a NATS reconnect: after a server
    restart its consumer may be gone, and nats-py only notices missed heartbeats 10-20 s later,
    a window in which a revoked key would still be honoured. A re-created watch delivers the
    current values again; those this watch has already delivered (same revision) are skipped.
    """

    def __init__(self, nc: NATS, bucket: str, on_put: OnPut, on_delete: OnDelete) -> None:
        self._nc, self._js, self._bucket = nc, nc.jetstream(), bucket
        self._on_put, self._on_delete = on_put, on_delete
        self._revisions: dict[str, int] = {}
        """key -> revision last delivered: what a re-created watch need not deliver again."""
        self.revision = 0
        """The bucket's revision (its stream sequence) this watch has delivered up to: two services
        watching one bucket compare these to tell whose view is newer (`VisibleTools.revisions`)."""
        self.ready = asyncio.Event()
        self.watches = 0
        """Watches created so far: more than one means it was re-created."""
        self._task: asyncio.Task[None] | None = None

    @property
    def bucket(self) -> str:
        return self._bucket

    async def start(self) -> None:
        """Start watching.

        Returns once the bucket's current content has been delivered, however long the bucket takes to
        answer (a replicated bucket without a leader: `libs.common.bus.starting`)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"watch:{self._bucket}")
        await patient_start(f"the content of KV bucket {self._bucket}", self._ready_within)

    async def _ready_within(self) -> None:
        if self._task is not None and self._task.done():
            self._task.result()  # a watch that ended for good says why
        await asyncio.wait_for(self.ready.wait(), READY_WITHIN)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        """Keep a watch on the bucket for good.

        Re-created after NATS reconnects, and after it breaks (waits doubling from 0.2 s to 5 s while it
        keeps breaking, from 0.2 s again once one held)."""

        def warn(state: RetryCallState) -> None:
            wait = state.next_action.sleep if state.next_action else 0.0
            error = state.outcome.exception() if state.outcome else None
            log.warning("watch on %s broke (%s); re-creating in %.1fs", self._bucket, error, wait)

        while True:
            try:
                async for attempt in patiently(first=0.2, most=5.0, before_sleep=warn, retry=_unless_stopping):
                    with attempt:
                        await self._watch_once()
                        stop_if_cancelled()  # a stop whose cancel a NATS request lost is no broken watch
            finally:
                stop_if_cancelled()
            await asyncio.sleep(0.2)  # the watch ended without an error, or NATS reconnected: start over

    async def _watch_once(self) -> None:
        """One watch, until it ends (returns), NATS reconnects (returns) or it breaks (raises)."""
        try:
            kv = await self._js.key_value(self._bucket)
        except BucketNotFoundError:
            await self._missing()
            return
        connection = self._nc.stats["reconnects"]
        # what the bucket held before the watch began: its initial values reach at least this revision
        floor = (await kv.status()).stream_info.state.last_seq
        watcher = await kv.watchall()
        self.watches += 1
        consume = asyncio.create_task(self._consume(watcher, floor))
        try:
            while not consume.done() and self._nc.stats["reconnects"] == connection:
                await asyncio.wait({consume}, timeout=RECONNECT_CHECK)
                stop_if_cancelled()
            if not consume.done():
                log.info("watch on %s: NATS reconnected; re-creating the watch", self._bucket)
                return
            consume.result()  # raises what broke the watch
        finally:
            consume.cancel()
            # its outcome is not ours to raise; our own cancel still is. Both waits are bounded: a stop
            # must never hang on a connection that no longer answers (nats-py's unsubscribe flushes)
            await asyncio.wait({consume}, timeout=STOP_WITHIN)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watcher.stop(), STOP_WITHIN)

    async def _missing(self) -> None:
        """The bucket does not exist (its owner has not started yet).

        Its content is nothing, so the view is complete, and the watch starts once the bucket appears."""
        if not self.ready.is_set():
            log.info("watch on %s: the bucket does not exist yet; empty until its owner creates it", self._bucket)
            self.ready.set()
        await asyncio.sleep(MISSING_RETRY)

    async def _consume(self, watcher: Any, floor: int) -> None:
        """Deliver the watch's entries.

        The view is `ready` once it holds the bucket's content as of the watch's start (revision
        `floor`). nats-py sends its end-of-values marker (None) when a consumer info says nothing is
        pending, which can race values already sent and not yet through this loop, so the marker alone
        would let a service serve from a view missing a key (a revoked key honoured, a tool unknown). A
        last revision that never arrives (expired by max-age since it was read) is waited for
        `LATE_VALUES` seconds, not forever."""
        async for entry in watcher:
            if entry is None:  # nats-py's end of the initial values
                if self.revision >= floor:
                    self.ready.set()
                elif not self.ready.is_set():
                    asyncio.get_running_loop().call_later(LATE_VALUES, self.ready.set)
                continue
            key, revision = entry.key, entry.revision or 0
            result: Awaitable[None] | None = None
            if entry.operation in ("DEL", "PURGE") or entry.value is None:
                if self._revisions.pop(key, None) is not None or self.watches == 1:  # else already gone
                    result = self._on_delete(key)
            elif self._revisions.get(key) != revision or not revision:  # else re-delivered: unchanged
                self._revisions[key] = revision
                result = self._on_put(key, entry.value, revision)
            if asyncio.iscoroutine(result):
                await result
            self.revision = revision  # only once the view holds the change
            if revision >= floor and not self.ready.is_set():
                self.ready.set()
