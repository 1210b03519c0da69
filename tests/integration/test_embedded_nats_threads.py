"""`stack.nats_threads`: the embedded nats-servers run with that GOMAXPROCS in their own environment
(read from /proc as the kernel holds it), set on them alone, kept across a restart, and a cluster of
them still forms and places replicated streams."""

from __future__ import annotations

import os
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig

from cli.nats_cluster import EmbeddedNatsCluster
from cli.stack import EmbeddedNats
from tests.support.cluster_ready import until_it_places
from tests.support.polling import poll_until
from tests.support.processes import environ

pytestmark = pytest.mark.integration


def _pid(server: EmbeddedNats) -> int:
    assert server.proc is not None and server.proc.poll() is None
    return server.proc.pid


async def _led(js: nats.js.JetStreamContext) -> bool:
    info = await js.stream_info("THREADS")
    return info.cluster is None or bool(info.cluster.leader)


async def _stores_a_message(url: str, replicas: int = 1) -> None:
    nc = await nats.connect(servers=url.split(","))
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="THREADS", subjects=["threads.>"], num_replicas=replicas))
        # a replicated stream takes its writes once its replicas chose a leader: on a loaded machine, with
        # one thread a member, that can outlast a publish's own wait
        await poll_until(lambda: _led(js), "the stream to have a leader")
        assert (await js.publish("threads.x", b"one")).seq == 1
    finally:
        await nc.close()


async def test_the_server_runs_on_the_threads_it_is_given_and_keeps_them_across_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_MARKER_FOR_THE_CHILD", "inherited")
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    server = EmbeddedNats(tmp_path / "nats", threads=1).start()
    try:
        started_with = environ(_pid(server))
        assert started_with["GOMAXPROCS"] == "1"
        assert started_with["BASTION_MARKER_FOR_THE_CHILD"] == "inherited"  # the rest of ours, unchanged
        assert "GOMAXPROCS" not in os.environ  # set on the child alone
        await _stores_a_message(server.url)
        first = _pid(server)
        server.stop()
        server.start()  # what the cluster's restart does; `bastion up`'s supervisor takes `environment()`
        assert _pid(server) != first
        assert environ(_pid(server))["GOMAXPROCS"] == "1"
    finally:
        server.stop()


@pytest.mark.parametrize(("inherited", "expected"), [(None, None), ("2", "2")])
def test_zero_threads_leaves_gos_default_or_the_inherited_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inherited: str | None, expected: str | None
) -> None:
    if inherited is None:
        monkeypatch.delenv("GOMAXPROCS", raising=False)
    else:
        monkeypatch.setenv("GOMAXPROCS", inherited)
    server = EmbeddedNats(tmp_path / "nats", threads=0).start()
    try:
        assert server.environment() is None
        assert environ(_pid(server)).get("GOMAXPROCS") == expected
    finally:
        server.stop()


async def test_a_cluster_on_one_thread_each_forms_and_places_three_replicas(tmp_path: Path) -> None:
    cluster = EmbeddedNatsCluster(tmp_path / "cluster", threads=1).start()
    try:
        assert [environ(_pid(member))["GOMAXPROCS"] for member in cluster.members] == ["1", "1", "1"]
        await until_it_places(cluster.url, 3)
        await _stores_a_message(cluster.url, replicas=3)
        cluster.restart(1)
        assert environ(_pid(cluster.members[1]))["GOMAXPROCS"] == "1"
    finally:
        cluster.stop()
