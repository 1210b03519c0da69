"""Request-timeout streaks (`libs.common.bus.bus_client`): requests timing out in a row on an open connection
move it to another member when the member does not answer a PING, and leave it where it is when the
member answers (the responder was slow, not the bus). PINGs are made rare here, so only the streak acts."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import nats.errors
import pytest

from cli.nats_cluster import EmbeddedNatsCluster
from libs.common.bus.bus_client import BusClient, BusStuck
from libs.common.bus.nats import Liveness, connect
from tests.support.cluster_ready import member_of, running_cluster
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

RARE_PINGS = Liveness(ping_interval=600, max_outstanding_pings=2, timeout_streak=3, connect_timeout=2)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[EmbeddedNatsCluster]:
    async with running_cluster(tmp_path / "cluster") as nodes:
        yield nodes


async def _timeouts_on_a_stoppedmember_of(cluster: EmbeddedNatsCluster, nc: BusClient) -> tuple[int, int] | None:
    """Stop the member `nc` is on and time requests out there: (its index, timeouts seen before the
    connection moved), or None (and the member running again) when the client had already left it
    before a request reached it, which a loaded machine's cluster can do on its own."""
    await nc.flush()
    stopped = member_of(cluster, nc)
    proc = cluster.members[stopped].proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGSTOP)
    timeouts = 0
    for _ in range(RARE_PINGS.timeout_streak):
        try:
            await nc.request("nobody.listens", b"", timeout=0.5)
        except nats.errors.TimeoutError:
            timeouts += 1
        except nats.errors.NoRespondersError:
            break  # a live member answered: moved already (the streak's own PING, or before it began)
    if timeouts == 0:
        os.kill(proc.pid, signal.SIGCONT)
        await poll_until(lambda: nc.is_connected, "the client to be connected again")
        return None
    return stopped, timeouts


async def test_a_streak_on_a_silent_member_moves_the_connection(cluster: EmbeddedNatsCluster) -> None:
    nc = await connect(cluster.url, "streak-test", liveness=RARE_PINGS)
    assert isinstance(nc, BusClient)
    try:
        for _ in range(5):  # a try where the client left the member before any request proves nothing
            if (seen := await _timeouts_on_a_stoppedmember_of(cluster, nc)) is not None:
                break
        assert seen is not None, "the client never stayed on the member long enough to be tried"
        stopped, _ = seen
        await poll_until(lambda: nc.is_connected and member_of(cluster, nc) != stopped, "a move to another member")
        with pytest.raises(nats.errors.NoRespondersError):  # the new member answers at once
            await nc.request("nobody.listens", b"", timeout=5)
    finally:
        await nc.close()


async def test_a_streak_on_a_member_that_answers_keeps_the_connection(cluster: EmbeddedNatsCluster) -> None:
    nc = await connect(cluster.url, "streak-test", liveness=RARE_PINGS)
    assert isinstance(nc, BusClient)
    try:

        async def never_answers(_msg: object) -> None:
            return None

        await nc.subscribe("slow.responder", cb=never_answers)  # takes requests, answers none
        await nc.flush()
        for _ in range(RARE_PINGS.timeout_streak):
            with pytest.raises(nats.errors.TimeoutError) as timed_out:
                await nc.request("slow.responder", b"", timeout=0.3)
            assert not isinstance(timed_out.value, BusStuck)  # the member kept talking
        await nc.flush(timeout=5)  # after the streak's PING, answered
        assert nc.stats["reconnects"] == 0
    finally:
        await nc.close()
