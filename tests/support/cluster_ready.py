"""When a NATS cluster can hold replicated stores: a meta leader alone cannot place three replicas
until every member has joined JetStream's meta group (seconds after the leader is elected)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
from nats.js.api import StreamConfig

from cli.nats_cluster import EmbeddedNatsCluster
from tests.support.polling import poll_until

__all__ = ["member_of", "places", "running_cluster", "until_it_places"]


async def places(js: nats.js.JetStreamContext, replicas: int) -> bool:
    """Whether a stream of `replicas` replicas can be created now (a probe, deleted again)."""
    try:
        await js.add_stream(StreamConfig(name="PROBE", subjects=["probe"], num_replicas=replicas))
    except (nats.js.errors.APIError, nats.errors.TimeoutError):
        return False
    await js.delete_stream("PROBE")
    return True


async def until_it_places(url: str, replicas: int = 3) -> None:
    nc = await nats.connect(servers=url.split(","))
    try:
        js = nc.jetstream()
        await poll_until(lambda: places(js, replicas), f"the cluster to place {replicas} replicas", every=0.2)
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def running_cluster(folder: Path, *, placing: int = 0) -> AsyncIterator[EmbeddedNatsCluster]:
    """A three-member cluster in `folder` (once it `places` that many replicas, when given); at the end
    every member a test paused is resumed first, or it would never stop."""
    nodes = EmbeddedNatsCluster(folder).start()
    try:
        if placing:
            await until_it_places(nodes.url, placing)
        yield nodes
    finally:
        for member in nodes.members:
            if member.proc is not None and member.proc.poll() is None:
                os.kill(member.proc.pid, signal.SIGCONT)
        nodes.stop()


def member_of(cluster: EmbeddedNatsCluster, nc: Any) -> int:
    """Which member of `cluster` the client `nc` is connected to."""
    url = nc.connected_url
    assert url is not None
    return next(i for i, m in enumerate(cluster.members) if m.url.endswith(f":{url.port}"))
