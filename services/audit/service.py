"""Audit service composition root: the only process that opens ClickHouse.

It builds the NATS connection, the store, the stream writer and the `AUDIT_QUERY` responder from
one `AuditSettings`; nothing connects before `start()`. Others read the audit log through
`AUDIT_QUERY` because the embedded engine can be opened by one process only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from bastion_common import permissions, subjects
from bastion_common.messages import AuditQuery, AuditRows
from bastion_common.nats import connect, ensure_audit_dead_stream, ensure_audit_stream, processed
from bastion_common.settings import AuditSettings

from .errors import StoreUnavailable
from .store import ClickHouseStore
from .writer import AuditWriter

__all__ = ["AuditService"]

log = logging.getLogger(__name__)


class AuditService:
    def __init__(self, settings: AuditSettings) -> None:
        self.settings = settings
        self.store = ClickHouseStore(settings.clickhouse_url)
        self.writer: AuditWriter | None = None
        self._nc: NATS | None = None
        self._query_sub: Subscription | None = None

    async def start(self) -> None:
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
        self.writer = AuditWriter(
            js, self.store, batch_size=self.settings.batch_size, flush_interval=self.settings.flush_interval
        )
        await self.writer.start()
        self._query_sub = await nc.subscribe(subjects.AUDIT_QUERY, queue=subjects.QUEUE_AUDIT, cb=self._on_query)
        await processed(nc)
        log.info("audit ready")

    async def stop(self) -> None:
        """Finish the batch in hand, flush its acks, then release the store for the next owner."""
        try:
            if self._query_sub is not None:
                with contextlib.suppress(Exception):
                    await self._query_sub.unsubscribe()
            if self.writer is not None:
                await self.writer.stop()
            if self._nc is not None and not self._nc.is_closed:
                # NATS down: acks not sent mean redeliveries, which the table collapses
                await (self._nc.drain() if self._nc.is_connected else self._nc.close())
        except Exception as exc:
            log.warning("audit: unclean NATS shutdown: %r", exc)
        finally:
            await asyncio.to_thread(self.store.close)

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

    def _fit(self, answer: AuditRows) -> bytes:
        """The reply, halving the rows until it fits the server's max payload."""
        assert self._nc is not None
        payload = answer.model_dump_json().encode()
        while len(payload) > self._nc.max_payload and answer.rows:
            answer.rows = answer.rows[: len(answer.rows) // 2]
            answer.error = "truncated: rows exceed the NATS max payload; ask for fewer"
            payload = answer.model_dump_json().encode()
        return payload
