"""Starts that wait out a NATS cluster in transition instead of crashing.

A service starts while the cluster may be electing a stream's leader (its leader just died), missing
the quorum of a replicated store (two of three members down) or still joining JetStream: its
streams and buckets answer nothing, time out or say "temporarily unavailable" for seconds. Each
step a start needs (declaring its streams, a bucket's first content, a consumer) is retried here
with waits doubling up to `MOST` seconds, one log line per wait naming the step and the error;
the start goes on once the step succeeds. What will not pass by waiting (a refused permission, a
configuration the server rejects for good) still fails the start, at once, with its own error.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors
from nats.aio.client import Client as NATS
from nats.js.errors import APIError, ServiceUnavailableError
from tenacity import RetryCallState, retry_if_exception

from libs.common.bus.bus_client import BusPermissionError
from libs.common.bus.stores import PASSING_ERR_CODES, StoreError, declare_owned, owned_by
from libs.common.runtime.patience import patiently
from libs.common.runtime.probes import Probes, start_probes
from libs.common.settings import ServiceSettings

__all__ = ["MOST", "patient_start", "start_owning", "transient"]

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST = 0.5
"""Seconds of the first wait."""
MOST = 5.0
"""Seconds of the longest wait between two attempts: a cluster back to health is noticed this soon."""


def transient(exc: BaseException) -> bool:
    """Whether `exc` is a cluster state that passes (no leader, no quorum, a member away), not a fault."""
    if isinstance(exc, BusPermissionError):
        return False
    if isinstance(exc, StoreError):
        return exc.transient
    if isinstance(exc, ServiceUnavailableError):
        return True
    if isinstance(exc, APIError):
        return exc.code == 503 or exc.err_code in PASSING_ERR_CODES
    transient_nats = (nats.errors.NoRespondersError, nats.errors.ConnectionReconnectingError)
    return isinstance(exc, (TimeoutError, *transient_nats))  # nats-py's TimeoutError is one


async def patient_start(what: str, step: Callable[[], Awaitable[T]]) -> T:
    """`step()`'s result, retried while it fails with a `transient` error.

    (Forever: a service that cannot reach its stores has nothing better to do, and its readiness says it
    is not ready)."""
    waited = 0

    def waiting(state: RetryCallState) -> None:
        nonlocal waited
        waited += 1
        wait = state.next_action.sleep if state.next_action else 0.0
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "start: %s not available yet (%s: %s); trying again in %.1fs",
            what,
            type(error).__name__,
            error,
            wait,
        )

    async for attempt in patiently(first=FIRST, most=MOST, retry=retry_if_exception(transient), before_sleep=waiting):
        with attempt:
            result = await step()
    if waited:
        log.warning("start: %s available after %d retries", what, waited)
    return result


async def start_owning(service: str, role: str, settings: ServiceSettings, nc: NATS) -> Probes | None:
    """The first steps of a service that owns streams, once connected.

    Its probes (ready while the streams `role` owns answer), then those streams declared, patiently."""
    probes = await start_probes(service, settings, nc, streams=owned_by(role))
    await patient_start("its streams", lambda: declare_owned(nc.jetstream(), role, settings))
    return probes
