"""A NATS member that answers, but seconds late (a congested link, a starved machine: every byte held 2 s by
`bench/delay_proxy.py` in front of it), is left like a hung one: the connection's PINGs go unanswered
for longer than it tolerates, it moves to another member of the cluster, and requests are answered
again while the member is still slow (`libs.common.bus.nats`, docs/reliability.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats.errors
import pytest

from bench.fault_kinds import DelayProxies
from cli.nats_cluster import EmbeddedNatsCluster
from libs.common.bus.nats import connect
from tests.support.cluster_ready import running_cluster
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[EmbeddedNatsCluster]:
    async with running_cluster(tmp_path / "cluster") as nodes:
        yield nodes


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[DelayProxies]:
    proxies = DelayProxies(tmp_path / "slow.json", delay=2.0)
    yield proxies
    proxies.stop()


async def test_a_connection_leaves_a_member_that_answers_seconds_late(
    cluster: EmbeddedNatsCluster, proxy: DelayProxies
) -> None:
    # the client knows the first member through the proxy alone; the others it learns from the cluster
    slow_url = proxy.through(cluster.members[0].url)
    nc = await connect(slow_url, "slow-member-test")
    responder = await connect(cluster.members[1].url, "responder")
    try:

        async def answer(msg: nats.aio.msg.Msg) -> None:
            await msg.respond(b"here")

        await responder.subscribe("slow.echo", cb=answer)
        await responder.flush()

        async def answered() -> bool:
            try:
                return (await nc.request("slow.echo", b"", timeout=5)).data == b"here"
            except nats.errors.Error:  # no responders: the interest has not crossed the route yet
                return False

        await poll_until(answered, "the responder's interest to reach the first member", within=30)
        assert nc.connected_url is not None and nc.connected_url.geturl() == slow_url

        proxy.slow(0)
        try:

            async def answered_elsewhere() -> bool:
                if nc.connected_url is None or nc.connected_url.geturl() == slow_url:
                    return False
                try:
                    return (await nc.request("slow.echo", b"", timeout=5)).data == b"here"
                except nats.errors.Error:
                    return False

            # answered while the member behind the proxy is still slow: the delay ends only after this
            await poll_until(answered_elsewhere, "a request answered through another member", within=40)
        finally:
            proxy.slow(None)
        assert nc.stats["reconnects"] >= 1
    finally:
        await nc.close()
        await responder.close()
