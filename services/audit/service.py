"""Audit service composition root: the only process that opens ClickHouse.

It builds the NATS connection, the store, the stream consumer (FastStream, `writer`) and the
responders (`AUDIT_QUERY`, `AUDIT_EXPORT`, `AUDIT_VERIFY`, `ANALYTICS_QUERY`) from one
`AuditSettings`; nothing connects before `start()`. Others read the audit log through these
subjects because the embedded engine can be opened by one process only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

from faststream.nats import NatsBroker, NatsNKey
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from bastion_common import metrics, observability, permissions, subjects
from bastion_common.analytics import AnalyticsAnswer, AnalyticsQuery, ExportPage, ExportRows, NotReadOnly, read_only
from bastion_common.messages import AuditQuery, AuditRows, AuditVerdict, AuditVerify
from bastion_common.nats import connect, ensure_audit_dead_stream, ensure_audit_stream, processed
from bastion_common.settings import AuditSettings

from .auditor import Auditor
from .errors import StoreUnavailable
from .store import ClickHouseStore
from .writer import AuditConsumer, BatchWriter

__all__ = ["AuditService"]

log = logging.getLogger(__name__)


class AuditService:
    def __init__(self, settings: AuditSettings) -> None:
        self.settings = settings
        self.store = ClickHouseStore(settings.clickhouse_url)
        self.writer: BatchWriter | None = None
        self.consumer: AuditConsumer | None = None
        self._nc: NATS | None = None
        self._subs: list[Subscription] = []
        self.auditor = Auditor(self.store, settings.checkpoint_key.get_secret_value().encode())
        self._checkpoints: asyncio.Task[None] | None = None
        self.metrics_server: metrics.MetricsServer | None = None

    async def start(self) -> None:
        self.metrics_server = observability.start("audit", self.settings)
        instance = self.settings.instance or f"{socket.gethostname()}-{os.getpid()}"
        self._nc = nc = await connect(
            self.settings.nats_url,
            name=f"bastion-audit-{instance}",
            role=permissions.AUDIT,
            nkey_seed_file=self.settings.nats_nkey_seed_file,
        )
        js = nc.jetstream()
        await ensure_audit_stream(js)
        await ensure_audit_dead_stream(js)
        try:
            await asyncio.to_thread(self.store.open)
        except StoreUnavailable as exc:  # the writer keeps retrying; events wait in the stream
            log.error("%s", exc)
        self.writer = BatchWriter(self.store)
        self.consumer = AuditConsumer(
            NatsBroker(
                servers=[u.strip() for u in self.settings.nats_url.split(",") if u.strip()],
                name=f"bastion-audit-writer-{instance}",
                max_reconnect_attempts=-1,  # like every service connection: ride out NATS restarts
                reconnect_time_wait=1,  # seconds (FastStream types it as an int)
                connect_timeout=5,
                ping_interval=20,
                max_outstanding_pings=3,
                logger=logging.getLogger("bastion_audit.broker"),
                log_level=logging.DEBUG,  # its per-batch access log; failures still log as errors
                inbox_prefix=subjects.inbox_prefix(permissions.AUDIT),  # the replies the audit role may read
                security=NatsNKey.from_file(seed) if (seed := self.settings.nats_nkey_seed_file) else None,
            ),
            self.writer,
            batch_size=self.settings.batch_size,
            flush_interval=self.settings.flush_interval,
            inbox_prefix=subjects.inbox_prefix(permissions.AUDIT),
        )
        await self.consumer.start()
        self._subs = [
            await nc.subscribe(subjects.AUDIT_QUERY, queue=subjects.QUEUE_AUDIT, cb=self._on_query),
            await nc.subscribe(subjects.ANALYTICS_QUERY, queue=subjects.QUEUE_AUDIT, cb=self._on_analytics),
            await nc.subscribe(subjects.AUDIT_EXPORT, queue=subjects.QUEUE_AUDIT, cb=self._on_export),
            await nc.subscribe(subjects.AUDIT_VERIFY, queue=subjects.QUEUE_AUDIT, cb=self._on_verify),
        ]
        if self.auditor.key:
            self._checkpoints = asyncio.create_task(self._checkpoint_loop(), name="audit-checkpoints")
        await processed(nc)
        log.info("audit ready")

    async def stop(self) -> None:
        """Finish the batch in hand, flush its acks, then release the store for the next owner."""
        try:
            if self._checkpoints is not None:
                self._checkpoints.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._checkpoints
            for sub in self._subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            if self.consumer is not None:
                await self.consumer.stop()
            if self._nc is not None and not self._nc.is_closed:
                # NATS down: acks not sent mean redeliveries, which the table collapses
                await (self._nc.drain() if self._nc.is_connected else self._nc.close())
        except Exception as exc:
            log.warning("audit: unclean NATS shutdown: %r", exc)
        finally:
            await asyncio.to_thread(self.store.close)
            if self.metrics_server is not None:
                self.metrics_server.close()

    async def _on_query(self, msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            query = AuditQuery.model_validate_json(msg.data)
            answer = AuditRows(rows=await asyncio.to_thread(self.store.recent, query))
        except ValidationError as exc:
            answer = AuditRows(error=f"invalid audit query: {exc.errors()[0]['msg']}")
        except StoreUnavailable as exc:
            answer = AuditRows(error=str(exc))
        await msg.respond(self._fit(answer))

    async def _on_analytics(self, msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            query = AnalyticsQuery.model_validate_json(msg.data)
            sql = read_only(query.sql)
            answer = await asyncio.to_thread(self.store.select, query, sql)
        except ValidationError as exc:
            answer = AnalyticsAnswer(error=f"invalid analytics query: {_first_error(exc)}")
        except (NotReadOnly, StoreUnavailable) as exc:
            answer = AnalyticsAnswer(error=str(exc))
        await self._respond(
            msg, answer, "the answer ({size} bytes) exceeds the NATS max payload; add a LIMIT or fewer columns"
        )

    async def _on_export(self, msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            page = ExportPage.model_validate_json(msg.data)
            answer = ExportRows(rows=await asyncio.to_thread(self.store.page, page))
        except ValidationError as exc:
            answer = ExportRows(error=f"invalid export page: {_first_error(exc)}")
        except StoreUnavailable as exc:
            answer = ExportRows(error=str(exc))
        await self._respond(msg, answer, "the page ({size} bytes) exceeds the NATS max payload; ask for fewer rows")

    async def _respond(self, msg: Msg, answer: AnalyticsAnswer | ExportRows, too_big: str) -> None:
        """The answer, or (when it would not fit one NATS message) an error saying how to ask for less."""
        assert self._nc is not None
        payload = answer.model_dump_json().encode()
        if len(payload) > self._nc.max_payload:
            payload = type(answer)(error=too_big.format(size=len(payload))).model_dump_json().encode()
        await msg.respond(payload)

    async def _on_verify(self, msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            query = AuditVerify.model_validate_json(msg.data)
            verdict = await asyncio.to_thread(self.auditor.verify, query.since)
        except ValidationError as exc:
            verdict = AuditVerdict(ok=False, error=f"invalid verify request: {exc.errors()[0]['msg']}")
        except StoreUnavailable as exc:
            verdict = AuditVerdict(ok=False, error=str(exc))
        await msg.respond(verdict.model_dump_json().encode())

    async def _checkpoint_loop(self) -> None:
        """Sign the chains' heads every `checkpoint_interval`; a store that is down only delays it."""
        while True:
            await asyncio.sleep(self.settings.checkpoint_interval)
            try:
                signed = await asyncio.to_thread(self.auditor.checkpoint)
            except StoreUnavailable as exc:
                log.warning("audit: checkpoint not taken: %s", exc)
            else:
                if signed:
                    log.info("audit: checkpoint signed %d chain head(s)", signed)

    def _fit(self, answer: AuditRows) -> bytes:
        """The reply, halving the rows until it fits the server's max payload."""
        assert self._nc is not None
        payload = answer.model_dump_json().encode()
        while len(payload) > self._nc.max_payload and answer.rows:
            answer.rows = answer.rows[: len(answer.rows) // 2]
            answer.error = "truncated: rows exceed the NATS max payload; ask for fewer"
            payload = answer.model_dump_json().encode()
        return payload


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])
