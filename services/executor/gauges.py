"""The executor's gauges, read when scraped: upstream health, breaker state, this replica's NATS lag."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from nats.aio.client import Client as NATS

from libs.common.runtime import metrics

from .breaker import BreakerState
from .upstream import State, Upstream

__all__ = ["executor_gauges"]


def executor_gauges(upstreams: Mapping[str, Upstream], nc: NATS | None) -> Iterator[metrics.Sample]:
    """Upstream health and breaker state, and this replica's NATS lag, as of the scrape."""
    for name, upstream in list(upstreams.items()):
        yield metrics.Sample(
            "bastion_upstream_up",
            "1 while the executor holds a ready session to the upstream, else 0.",
            (("server", name),),
            1.0 if upstream.state is State.READY else 0.0,
        )
        for state in BreakerState:
            yield metrics.Sample(
                "bastion_upstream_breaker_state",
                "1 for the circuit breaker's current state of an upstream, 0 for the others.",
                (("server", name), ("state", state.value)),
                1.0 if upstream.breaker.state is state else 0.0,
            )
    if nc is not None:
        yield from metrics.subscription_lag("executor", nc)
