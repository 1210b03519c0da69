"""Fixtures of the audit pipeline tests: a NATS client, a producer's publisher and audit services
that are always stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from libs.common.audit.audit_chain import producer_id
from libs.common.audit.audit_publisher import AuditPublisher
from libs.common.contracts import subjects
from libs.common.settings import AuditSettings
from services.audit import AuditService
from tests.support.stores import declared


@pytest.fixture
def chdb_url(tmp_path: Path) -> str:
    return f"chdb://{tmp_path / 'clickhouse'}"


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    """A client of a NATS whose audit streams exist, as they do once the audit service (their owner)
    has started for the first time: producers publish into them whether it runs or not."""
    client = await nats.connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    await declared(client.jetstream(), subjects.AUDIT_STREAM, subjects.AUDIT_DEAD_STREAM)
    yield client
    await client.close()


@pytest.fixture
async def publisher(nc: NATS) -> AsyncIterator[AuditPublisher]:
    async with AuditPublisher(nc, producer=producer_id("ingress")) as pub:
        yield pub


@pytest.fixture
async def audit(nats_url: str, chdb_url: str) -> AsyncIterator[Callable[..., object]]:
    """`async with audit(**overrides) as service`: an AuditService that is always stopped, because the
    embedded engine can hold only one store path per process and the next test needs its own."""
    started: list[AuditService] = []

    @asynccontextmanager
    async def run(**overrides: object) -> AsyncIterator[AuditService]:
        values = {"nats_url": nats_url, "clickhouse_url": chdb_url, "batch_size": 100, "flush_interval": 0.05}
        service = AuditService(AuditSettings(**(values | overrides)))
        started.append(service)
        await service.start()
        try:
            yield service
        finally:
            started.remove(service)
            await service.stop()

    yield run
    for service in started:
        await service.stop()
