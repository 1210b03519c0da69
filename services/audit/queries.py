"""Analytics queries in the audit service.

Checked, admitted, run on their own threads and engine connections, and stopped in the engine when their
time is up or their caller gives up.

- Checked: the allow-list (`libs.common.analytics.queries.read_only`); a refusal never reaches the engine.
- Admitted: at most `analytics_queries` run at once, `analytics_queries_per_principal` of one
  principal. One more waits up to `QUEUE_WAIT` seconds for a slot (a dashboard asks for its nine
  panels at once), in a short line (`WAITING`, `WAITING_PER_PRINCIPAL`); past that, or with the
  line full, it is answered "busy, retry after". A slot is held until the engine has really let go
  of the query, not until its caller stopped waiting, so the bound is on the engine's work.
- Run: on a pool of threads of their own (`analytics_queries` of them), each on a connection of
  its own (`ClickHouseStore.analytics`: read-only, with the query's time, memory, row, byte and
  thread limits), so the writer, the checkpoints and the other requests never wait for one.
- Stopped: the engine stops a query at its `timeout` (`max_execution_time`); should it not,
  `STOP_GRACE` later it is killed (`KILL QUERY`), and so is a query whose caller sent
  `AnalyticsCancel` (it gave up: `libs.common.analytics.asking.ask`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, Literal

from libs.common.analytics.queries import AnalyticsAnswer, AnalyticsQuery, NotReadOnly, engine_limits, read_only

from .errors import StoreUnavailable
from .store import ClickHouseStore

__all__ = ["STOP_GRACE", "AnalyticsRunner", "QueryLimits"]

log = logging.getLogger(__name__)

QUEUE_WAIT: Final = 3.0
"""Seconds a query waits for a slot before it is answered busy (its caller waits its `timeout` and 5 s)."""
WAITING: Final = 16
WAITING_PER_PRINCIPAL: Final = 8
"""Queries that may wait for a slot, in all and of one principal; one more is answered busy at once."""
STOP_GRACE: Final = 1.0
"""Seconds past its timeout before a query the engine has not stopped itself is killed."""
KILL_AGAIN: Final = 0.5
"""Seconds between kills of a query the engine has not let go of yet."""
STOP_WAIT: Final = 10.0
"""Seconds the caller is kept waiting for a killed query to end; its slot stays taken until it does."""
_CODE = re.compile(r"Code: (\d+)")
_LIMITS: Final = {159: "time", 241: "memory", 396: "result size", 158: "rows read", 307: "bytes read"}
"""ClickHouse error codes of a limit hit: TIMEOUT_EXCEEDED, MEMORY_LIMIT_EXCEEDED, TOO_MANY_ROWS_OR_BYTES, ..."""
_CANCELLED: Final = 394  # QUERY_WAS_CANCELLED
_READONLY: Final = 164


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """What the service allows analytics queries (`AuditSettings.analytics_*`)."""

    queries: int = 3
    per_principal: int = 2
    memory: int = 512 * 1024 * 1024
    threads: int = 1


@dataclass(slots=True)
class _Running:
    query_id: str
    principal: str
    marker: str
    deadline: float
    stopped: Literal["", "limit", "cancelled"] = ""
    future: asyncio.Future[AnalyticsAnswer] | None = None
    """The engine's work: done once the engine let go of the query."""


class AnalyticsRunner:
    def __init__(self, store: ClickHouseStore, limits: QueryLimits, max_bytes: Callable[[], int]) -> None:
        self._store = store
        self.limits = limits
        self._max_bytes = max_bytes
        """Bytes of result one answer can carry (the NATS max payload, known once connected)."""
        self._pool = ThreadPoolExecutor(max_workers=limits.queries, thread_name_prefix="audit-analytics")
        self.running: dict[str, _Running] = {}
        """Queries the engine is running, by id: each holds its slot until the engine returned."""
        self._per_principal: Counter[str] = Counter()
        self._waiting: Counter[str] = Counter()
        self._slot_freed = asyncio.Event()

    async def run(self, query: AnalyticsQuery) -> AnalyticsAnswer:
        try:
            sql = read_only(query.sql, payloads=query.payloads, parameters=query.parameters)
        except NotReadOnly as exc:
            return AnalyticsAnswer(error=str(exc), error_kind="refused")
        if query.query_id in self.running:
            return AnalyticsAnswer(error=f"query {query.query_id} is running already", error_kind="refused")
        busy = await self._admitted(query.principal)
        if busy is not None:
            return busy
        running = _Running(
            query.query_id, query.principal, f"bastion-analytics:{query.query_id}", time.monotonic() + query.timeout
        )
        self._enter(running)
        limits = engine_limits(
            query, max_bytes=self._max_bytes(), memory=self.limits.memory, threads=self.limits.threads
        )
        loop = asyncio.get_running_loop()
        running.future = future = loop.run_in_executor(
            self._pool, self._store.analytics, query, sql, limits, running.marker
        )
        future.add_done_callback(lambda _: self._leave(running))
        try:
            done, _ = await asyncio.wait({future}, timeout=query.timeout + STOP_GRACE)
            if not done:  # the engine did not stop it at its time limit
                await self._stop(running, "limit")
                done = {future} if future.done() else set()
        except asyncio.CancelledError:  # the service is stopping
            await asyncio.shield(self._stop(running, "cancelled"))
            raise
        if not done:
            return AnalyticsAnswer(
                error=f"the query ran past its time limit ({query.timeout:g} s) and is being stopped",
                error_kind="limit",
            )
        try:
            return future.result()
        except NotReadOnly as exc:  # the driver would not have sent it as checked (`run_bound`)
            return AnalyticsAnswer(error=str(exc), error_kind="refused")
        except StoreUnavailable as exc:
            return _failed(running, query, exc)

    async def cancel(self, query_id: str) -> None:
        """Stop query `query_id` (its caller gave up), if this replica runs it."""
        running = self.running.get(query_id)
        if running is not None:
            log.info("analytics: stopping query %s, its caller gave up", query_id)
            await self._stop(running, "cancelled")

    async def close(self) -> None:
        """Stop every query still running, and let the threads go."""
        await asyncio.gather(*(self._stop(running, "cancelled") for running in list(self.running.values())))
        self._pool.shutdown(wait=False)

    async def _stop(self, running: _Running, why: Literal["limit", "cancelled"]) -> None:
        """Kill the query in the engine, again until the engine let go of it (at most `STOP_WAIT` seconds).

        A kill sent while its connection is still opening finds nothing to stop yet."""
        running.stopped = running.stopped or why
        future = running.future
        until = time.monotonic() + STOP_WAIT
        while future is not None and not future.done() and time.monotonic() < until:
            await self._kill(running)
            await asyncio.wait({future}, timeout=KILL_AGAIN)

    def _free(self, principal: str) -> bool:
        return len(self.running) < self.limits.queries and self._per_principal[principal] < self.limits.per_principal

    async def _admitted(self, principal: str) -> AnalyticsAnswer | None:
        """None once a slot is free for `principal` (the caller takes it before its next await), or the busy answer."""
        if self._free(principal):
            return None
        if sum(self._waiting.values()) >= WAITING or self._waiting[principal] >= WAITING_PER_PRINCIPAL:
            return self._busy(principal)
        self._waiting[principal] += 1
        deadline = time.monotonic() + QUEUE_WAIT
        try:
            while not self._free(principal):
                self._slot_freed.clear()
                left = deadline - time.monotonic()
                if left <= 0:
                    return self._busy(principal)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slot_freed.wait(), left)
        finally:
            self._waiting[principal] -= 1
            if self._waiting[principal] <= 0:
                del self._waiting[principal]
        return None

    def _busy(self, principal: str) -> AnalyticsAnswer:
        if len(self.running) >= self.limits.queries:
            why = f"{len(self.running)} analytics queries are running, the most at once"
        else:
            who = principal or "unnamed callers"
            why = f"{who} has {self._per_principal[principal]} analytics queries running, the most for one principal"
        soonest = min(running.deadline for running in self.running.values()) - time.monotonic()
        after = max(1.0, round(soonest + STOP_GRACE, 1))
        return AnalyticsAnswer(error=f"busy: {why}; retry after {after:g} s", error_kind="busy", retry_after=after)

    def _enter(self, running: _Running) -> None:
        self.running[running.query_id] = running
        self._per_principal[running.principal] += 1

    def _leave(self, running: _Running) -> None:
        self.running.pop(running.query_id, None)
        self._per_principal[running.principal] -= 1
        if self._per_principal[running.principal] <= 0:
            del self._per_principal[running.principal]
        self._slot_freed.set()

    async def _kill(self, running: _Running) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._store.kill, running.marker)
        except (StoreUnavailable, RuntimeError) as exc:  # RuntimeError: the loop's executor is shut down
            log.warning("analytics: could not stop query %s: %s", running.query_id, exc)


def _failed(running: _Running, query: AnalyticsQuery, exc: StoreUnavailable) -> AnalyticsAnswer:
    """The answer to a query the engine refused, stopped or failed."""
    text = str(exc)
    match = _CODE.search(text)
    code = int(match[1]) if match else None
    if code == _CANCELLED or (running.stopped and code in _LIMITS):
        if running.stopped == "cancelled":
            return AnalyticsAnswer(error="the query was stopped: its caller gave up", error_kind="cancelled")
        return AnalyticsAnswer(
            error=f"the query ran past its time limit ({query.timeout:g} s) and was stopped", error_kind="limit"
        )
    if code in _LIMITS:
        return AnalyticsAnswer(error=f"{_LIMITS[code]} limit: {text}", error_kind="limit")
    if code == _READONLY:  # the engine's wall refused what the allow-list let through
        log.error("analytics: the engine refused query %s as not read-only", query.query_id)
        return AnalyticsAnswer(error=text, error_kind="refused")
    return AnalyticsAnswer(error=text, error_kind="failed")
