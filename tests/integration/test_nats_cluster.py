"""A real 3-server NATS cluster on loopback (`cli.nats_cluster`): a replicated stream loses nothing when
the server leading it is killed, and the gateway keeps answering through the loss of a server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from mcp.shared.exceptions import MCPError
from nats.js.api import StreamConfig

from cli.nats_cluster import EmbeddedNatsCluster
from libs.common.contracts.errors import JSONRPC_CODE, ErrorKind
from tests.support.cluster_ready import until_it_places
from tests.support.gateway import running_gateway
from tests.support.polling import poll_until
from tests.support.port_checks import refused_to_others

pytestmark = pytest.mark.integration


@pytest.fixture
async def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[EmbeddedNatsCluster]:
    """Three servers that can place three replicas, and every store the services create at three
    (`BASTION_NATS_REPLICAS`), so losing any one server loses no store."""
    nodes = EmbeddedNatsCluster(tmp_path / "cluster").start()
    try:
        await until_it_places(nodes.url, 3)
        monkeypatch.setenv("BASTION_NATS_REPLICAS", "3")
        yield nodes
    finally:
        nodes.stop()


def test_a_clusters_ports_are_its_own_from_the_pick_until_it_stops(tmp_path: Path) -> None:
    """Each member's configuration names the others' route ports, so all are picked before the first
    member starts. Until the cluster stops no one else may be handed them: a port taken meanwhile
    (another server's pick) stops that member at its start, or at a restart."""
    nodes = EmbeddedNatsCluster(tmp_path / "cluster")
    ports = list(nodes.held.ports)
    assert len(set(ports)) == 6
    assert all(refused_to_others(port) for port in ports)
    picked = [socket.socket() for _ in range(500)]
    try:
        for sock in picked:
            sock.bind(("127.0.0.1", 0))
        assert set(ports).isdisjoint(sock.getsockname()[1] for sock in picked)
    finally:
        for sock in picked:
            sock.close()
    nodes.start()
    try:
        assert [member.port for member in nodes.members] == ports[3:]
        for port in ports:  # every member listens on the client and route ports it was told
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        nodes.restart(2)
        socket.create_connection(("127.0.0.1", ports[5]), timeout=5).close()
        assert len(nodes.held.sockets) == 6
    finally:
        nodes.stop()
    assert not nodes.held.sockets


async def _replicas_current(js: nats.js.JetStreamContext, stream: str) -> bool:
    """Whether every replica of `stream` has caught up. Asking may time out while a server that was
    just restarted rejoins (on a loaded machine, for longer than a JetStream request's 5 s)."""
    try:
        info = await js.stream_info(stream)
    except (nats.errors.TimeoutError, nats.js.errors.APIError, nats.errors.ConnectionClosedError):
        return False
    replicas = info.cluster.replicas if info.cluster else None
    return bool(replicas) and len(replicas) == 2 and all(replica.current for replica in replicas or [])


async def _publish(js: nats.js.JetStreamContext, subject: str, payload: bytes, msg_id: str) -> None:
    """Publish until the stream acknowledges (a new leader is being elected: seconds); the message id
    makes a retry of a publish that was stored but not acknowledged a duplicate the stream drops."""
    async with asyncio.timeout(60):
        while True:
            try:
                await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id}, timeout=2)
                return
            except (nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError, nats.errors.ConnectionClosedError):
                await asyncio.sleep(0.2)


async def _reader(js: nats.js.JetStreamContext) -> nats.js.JetStreamContext.PullSubscription:
    """A pull consumer on LOSS, asked for again while the healed cluster's API still times out (its
    first request after the restart once took over nats-py's 5 s: not a lost message)."""
    async with asyncio.timeout(60):
        while True:
            try:
                return await js.pull_subscribe("loss.>", durable="reader", stream="LOSS")
            except nats.errors.TimeoutError:
                await asyncio.sleep(0.2)


async def test_an_r3_stream_loses_nothing_when_its_leader_is_killed(cluster: EmbeddedNatsCluster) -> None:
    nc = await nats.connect(servers=cluster.url.split(","), max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="LOSS", subjects=["loss.>"], num_replicas=3))
        for i in range(50):
            await _publish(js, "loss.x", b"%d" % i, f"m{i}")
        leader = (await js.stream_info("LOSS")).cluster.leader  # type: ignore[union-attr]
        assert leader is not None
        cluster.kill(cluster.member_named(leader))
        for i in range(50, 100):
            await _publish(js, "loss.x", b"%d" % i, f"m{i}")
        info = await js.stream_info("LOSS")
        assert info.cluster is not None and info.cluster.leader not in (None, leader)
        assert info.state.messages == 100
        cluster.restart(cluster.member_named(leader))
        await poll_until(lambda: _replicas_current(js, "LOSS"), "the restarted server to catch up", within=120)
        seen = []
        sub = await _reader(js)
        while len(seen) < 100:
            seen += [int(m.data) for m in await sub.fetch(100, timeout=10)]
        assert seen == list(range(100))
    finally:
        await nc.close()


async def test_the_gateway_runs_on_the_cluster_and_rides_out_a_lost_server(
    cluster: EmbeddedNatsCluster, redis_url: str, tmp_path: Path
) -> None:
    async with running_gateway(cluster.url, redis_url, tmp_path) as gateway, gateway.client() as client:

        async def answer(text: str) -> str:
            """The echo of `text`, asking again only on what the docs call retryable: the gateway
            unavailable while a store's replicas elect a leader (-32070), or an error result."""
            async with asyncio.timeout(120):
                while True:
                    try:
                        result = await client.call_tool("echo__echo", {"text": text})
                    except MCPError as refused:
                        assert refused.code == JSONRPC_CODE[ErrorKind.GATEWAY_UNAVAILABLE], refused
                        await asyncio.sleep(0.2)
                        continue
                    if not result.is_error:
                        return result.content[0].text  # type: ignore[union-attr]
                    await asyncio.sleep(0.2)

        assert await answer("before") == "before"
        cluster.kill(0)
        assert [await answer(f"after {i}") for i in range(5)] == [f"after {i}" for i in range(5)]
