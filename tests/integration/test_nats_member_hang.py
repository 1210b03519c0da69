"""A NATS member that hangs (SIGSTOP: its sockets stay open, it answers nothing) does not take the gateway
down with it: the services connected to it leave it for another member of the cluster and calls
succeed again while it is still stopped (`libs.common.bus.bus_client`, docs/reliability.md). A call
sent while the executor is subscribed nowhere (the hung member's routes dropped, the executor not yet
back) waits for it (`libs.common.bus.rejoin`) rather than failing as if no executor ran."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cli.nats_cluster import EmbeddedNatsCluster
from tests.support.call_load import CallLoad
from tests.support.cluster_ready import member_of, running_cluster
from tests.support.executor_away import counted
from tests.support.gateway import running_gateway
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

PAUSE = 20.0
"""Seconds the member stays stopped unless a call succeeds first (the bound of the wait, not a threshold)."""


@pytest.fixture
async def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[EmbeddedNatsCluster]:
    async with running_cluster(tmp_path / "cluster", placing=3) as nodes:
        monkeypatch.setenv("BASTION_NATS_REPLICAS", "3")
        yield nodes


async def test_calls_succeed_again_while_the_member_ingress_uses_is_still_stopped(
    cluster: EmbeddedNatsCluster, redis_url: str, tmp_path: Path
) -> None:
    async with running_gateway(cluster.url, redis_url, tmp_path) as gateway, gateway.client() as client:
        load = CallLoad(client)
        calls = asyncio.create_task(load.run())
        try:
            await poll_until(lambda: len(load.successes) >= 5 * load.workers, "the first calls")
            hung = member_of(cluster, gateway.ingress._nc)
            proc = cluster.members[hung].proc
            assert proc is not None
            sent_again = _sent_again()
            stopped_at = time.monotonic()
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                with contextlib.suppress(AssertionError):  # the pause's end bounds the wait
                    await poll_until(
                        lambda: load.sent_and_answered_after(stopped_at), "a call via another member", PAUSE
                    )
                answered_while_stopped = load.sent_and_answered_after(stopped_at)
                moved_to = member_of(cluster, gateway.ingress._nc)
                gap = load.longest_gap(stopped_at)
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            log.warning(
                "longest time without a successful call: %.1fs; calls sent again while no replica was "
                "subscribed (`libs.common.bus.rejoin`): %d; errors meanwhile: %s",
                gap,
                _sent_again() - sent_again,
                load.errors,
            )
            assert answered_while_stopped, load.errors
            assert moved_to != hung
            # each failure names the NATS member that stopped answering, not only a service
            assert all("NATS member" in error for error in load.errors), load.errors
        finally:
            calls.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await calls


def _sent_again() -> float:
    return counted("bastion_ingress_routed_sends", {"route": "again"})
