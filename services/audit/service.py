"""Audit service composition root: the only process that opens ClickHouse.

It builds, from one `AuditSettings`, the store, one FastStream broker with the stream consumer
(`writer`) and the request/reply handlers (`responders`: `AUDIT_QUERY`, `AUDIT_EXPORT`,
`AUDIT_VERIFY`, `ANALYTICS_QUERY` through `queries.AnalyticsRunner`), a watch on `bastion_keys` (the
writer flags events naming keys that do not exist) and the checkpoint loop; nothing connects before
`start()`. Writing, reading, checkpoints and analytics each have their own threads and store
connections, so none of them waits for another.
Others read the audit log through those subjects because the embedded engine can be opened by one
process only. A plain nats-py connection declares the streams and proves the subscriptions live.

A second replica configured with the same embedded store stands by (`ownership`): it subscribes to
nothing until the owner is gone, then takes the store over and serves; with a ClickHouse server every
replica serves.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from faststream.nats import NatsBroker, NatsNKey
from nats.aio.client import Client as NATS

from libs.common.bus import permissions
from libs.common.bus.kvwatch import BucketWatch
from libs.common.bus.nats import connect_service, drain_or_close, processed, servers
from libs.common.bus.starting import patient_start, start_owning
from libs.common.contracts import subjects
from libs.common.runtime import metrics, observability
from libs.common.runtime.probes import Probes
from libs.common.runtime.tasks import cancel_and_wait
from libs.common.settings import AuditSettings

from .auditor import Auditor
from .errors import StoreUnavailable
from .known_keys import KnownKeys
from .ownership import StoreLock
from .queries import AnalyticsRunner, QueryLimits
from .responders import Responders
from .store import Analyst, ClickHouseStore
from .writer import AuditConsumer, BatchWriter

__all__ = ["AuditService"]

log = logging.getLogger(__name__)

TAKEOVER_POLL = 0.2
"""Seconds between a standby's attempts to take the embedded store's lock."""


class AuditService:
    def __init__(self, settings: AuditSettings) -> None:
        self.settings = settings
        analyst = Analyst(settings.clickhouse_analyst_user, settings.clickhouse_analyst_password.get_secret_value())
        self.store = ClickHouseStore(settings.clickhouse_url, analyst)
        self.ownership = StoreLock(settings.clickhouse_url)
        self._standby: asyncio.Task[None] | None = None
        self.auditor = Auditor(self.store, settings.checkpoint_key.get_secret_value().encode())
        self.runner: AnalyticsRunner | None = None
        self.keys = KnownKeys()
        self.writer: BatchWriter | None = None
        self.consumer: AuditConsumer | None = None
        self._nc: NATS | None = None
        self._keys_watch: BucketWatch | None = None
        self._checkpoints: asyncio.Task[None] | None = None
        self._checkpoint_lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-checkpoints")
        self.checkpoint_rounds = 0
        """Checkpoint rounds that ran (whether or not a chain had grown)."""
        self.metrics_server: metrics.MetricsServer | None = None
        self.probes: Probes | None = None

    async def start(self) -> None:
        """Serve; or, when another process owns the embedded store, stand by and take it over once free."""
        if self.ownership.acquire():
            await self._serve()
            return
        log.warning(
            "audit: another process owns the store at %s; standing by (no queries, no events) until it stops",
            self.ownership.path,
        )
        self._standby = asyncio.create_task(self._take_over(), name="audit-standby")

    async def _take_over(self) -> None:
        since = time.monotonic()
        while True:  # polled: a thread blocked in flock could not be cancelled by a stop
            if self.ownership.acquire():
                break
            await asyncio.sleep(TAKEOVER_POLL)
        log.warning("audit: took the store over after %.1fs standing by", time.monotonic() - since)
        try:
            await self._serve()
        except Exception:  # a start that fails here has nobody to report to: end the process, to be restarted
            log.exception("audit: serving the store taken over failed; stopping")
            os.kill(os.getpid(), signal.SIGTERM)

    async def _serve(self) -> None:
        self.metrics_server = observability.start("audit", self.settings)
        instance = self.settings.instance or f"{socket.gethostname()}-{os.getpid()}"
        self._nc = nc = await connect_service(self.settings, role=permissions.AUDIT, name=f"bastion-audit-{instance}")
        # first: a start that waits is alive, and its readiness says what it waits for
        self.probes = await start_owning("audit", permissions.AUDIT, self.settings, nc)
        try:
            await asyncio.to_thread(self.store.open)
        except StoreUnavailable as exc:  # the writer keeps retrying; events wait in the stream
            log.error("%s", exc)
        self._keys_watch = BucketWatch(nc, subjects.KV_KEYS, self.keys.put, self.keys.delete)
        await self._keys_watch.start()  # before the writer: an existing key is never flagged unknown
        limits = QueryLimits(
            queries=self.settings.analytics_queries,
            per_principal=self.settings.analytics_queries_per_principal,
            memory=self.settings.analytics_query_memory_mb * 1024 * 1024,
            threads=self.settings.analytics_query_threads,
        )
        self.runner = AnalyticsRunner(self.store, limits, lambda: nc.max_payload)
        broker = self._broker(instance)
        broker.include_router(Responders(self.store, self.auditor, self.runner, lambda: nc.max_payload).router)
        self.writer = BatchWriter(self.store, known_key=self.keys.knows)
        self.consumer = AuditConsumer(
            broker,
            self.writer,
            batch_size=self.settings.batch_size,
            flush_interval=self.settings.flush_interval,
            inbox_prefix=subjects.inbox_prefix(permissions.AUDIT),
        )
        await patient_start("its stream consumer", self.consumer.start)
        if self.auditor.key:
            self._checkpoints = asyncio.create_task(self._checkpoint_loop(), name="audit-checkpoints")
        await processed(broker.config.connection_state.connection)  # "started" means "subscribed"
        if self.probes is not None:
            self.probes.started("audit")
        log.info("audit ready")

    def _broker(self, instance: str) -> NatsBroker:
        """FastStream's connection, with the audit role's credentials and every service's reconnects."""
        seed = self.settings.nats_nkey_seed_file
        return NatsBroker(
            servers=servers(self.settings.nats_url),
            name=f"bastion-audit-broker-{instance}",
            max_reconnect_attempts=-1,  # like every service connection: ride out NATS restarts
            reconnect_time_wait=1,  # seconds (FastStream types it as an int)
            connect_timeout=self.settings.nats_connect_timeout,  # type: ignore[arg-type]  # a float is waited
            ping_interval=self.settings.nats_ping_interval,  # type: ignore[arg-type]  # a float is slept
            max_outstanding_pings=self.settings.nats_max_outstanding_pings,
            logger=logging.getLogger("services.audit.broker"),
            log_level=logging.DEBUG,  # its per-message access log; failures still log as errors
            inbox_prefix=subjects.inbox_prefix(permissions.AUDIT),  # the replies the audit role may read
            security=NatsNKey.from_file(seed) if seed else None,
        )

    async def stop(self) -> None:
        """Finish the batch in hand, flush its acks, then release the store for the next owner."""
        await cancel_and_wait(self._standby)
        try:
            await self._stop_parts()
        finally:
            if self._nc is not None:
                await drain_or_close(self._nc)
            self._checkpoint_lane.shutdown(wait=False)
            await asyncio.to_thread(self.store.close)
            self.ownership.release()
            await observability.stop(self.metrics_server, self.probes)

    async def _stop_parts(self) -> None:
        """Stop each part even when one before it fails (NATS down, the consumer's drain raises).

        A part left running, the keys watch say, keeps retrying on a connection about to be closed."""
        parts: list[Callable[[], Awaitable[object]]] = [lambda: cancel_and_wait(self._checkpoints)]
        if self.consumer is not None:
            parts.append(self.consumer.stop)
        if self.runner is not None:
            parts.append(self.runner.close)
        if self._keys_watch is not None:
            parts.append(self._keys_watch.stop)
        for stop in parts:
            try:
                await stop()
            except Exception as exc:  # NATS down: acks not sent mean redeliveries, which are not inserted twice
                log.warning("audit: unclean NATS shutdown: %r", exc)

    async def _checkpoint_loop(self) -> None:
        """Sign the chains' heads every `checkpoint_interval`.

        On a fixed schedule (a slow round does not push the next ones back) and on a thread and store
        connection of their own, so no query delays them; a store that is down only delays one."""
        interval = self.settings.checkpoint_interval
        loop = asyncio.get_running_loop()
        due = time.monotonic() + interval
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due += interval * max(1, int((time.monotonic() - due) // interval) + 1)  # skip rounds already missed
            try:
                signed = await loop.run_in_executor(self._checkpoint_lane, self.auditor.checkpoint)
            except StoreUnavailable as exc:
                log.warning("audit: checkpoint not taken: %s", exc)
            else:
                self.checkpoint_rounds += 1
                if signed:
                    log.info("audit: checkpoint signed %d chain head(s)", signed)
