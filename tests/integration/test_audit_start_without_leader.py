"""The audit service started while its replicated stream has no leader (two of three members stopped:
no quorum) waits for the cluster instead of failing its start, and serves once the members return
(`libs.common.bus.starting`)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from cli.nats_cluster import EmbeddedNatsCluster
from libs.common.bus import permissions
from libs.common.bus.stores import declare_owned
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditVerdict, AuditVerify
from libs.common.settings import AuditSettings
from services.audit import AuditService
from tests.support.cluster_ready import running_cluster
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

STOPPED = (1, 2)
"""The members paused: a majority of every three-replica stream."""


@pytest.fixture
async def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[EmbeddedNatsCluster]:
    async with running_cluster(tmp_path / "cluster", placing=3) as nodes:
        monkeypatch.setenv("BASTION_NATS_REPLICAS", "3")
        yield nodes


def _signal_members(cluster: EmbeddedNatsCluster, sig: signal.Signals) -> None:
    for index in STOPPED:
        proc = cluster.members[index].proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, sig)


def _resume(cluster: EmbeddedNatsCluster) -> None:
    _signal_members(cluster, signal.SIGCONT)


async def test_audit_waits_for_its_streams_leader_and_then_serves(
    cluster: EmbeddedNatsCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the one member left running: the test is about the stream's missing leader, not finding a member
    settings = AuditSettings(nats_url=cluster.members[0].url, clickhouse_url=f"chdb://{tmp_path / 'clickhouse'}")
    nc = await nats.connect(servers=cluster.members[0].url, max_reconnect_attempts=-1)
    try:
        await declare_owned(nc.jetstream(), permissions.AUDIT, settings)  # its streams exist, on three members
        _signal_members(cluster, signal.SIGSTOP)
        service = AuditService(settings)
        caplog.set_level(logging.WARNING, logger="libs.common.bus.starting")
        starting = asyncio.create_task(service.start())
        try:
            await poll_until(lambda: "not available yet" in caplog.text, "the start to say it waits", within=60)
            assert not starting.done(), starting  # waiting, not failed
            _resume(cluster)
            await asyncio.wait_for(starting, 120)  # a failed start raises here
            request = AuditVerify().model_dump_json().encode()
            reply = await nc.request(subjects.AUDIT_VERIFY, request, timeout=30)
            assert AuditVerdict.model_validate_json(reply.data).ok
        finally:
            _resume(cluster)
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            await service.stop()
    finally:
        await nc.close()
