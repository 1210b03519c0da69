"""When a NATS cluster can hold replicated stores: a meta leader alone cannot place three replicas
until every member has joined JetStream's meta group (seconds after the leader is elected)."""

from __future__ import annotations

import nats
from nats.js.api import StreamConfig

from tests.support.polling import poll_until

__all__ = ["places", "until_it_places"]


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
