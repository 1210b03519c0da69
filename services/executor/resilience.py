"""What a call's failure means for the next one: which outcomes count against the breaker, which
may be re-sent, and the health an upstream reports.

Kept apart from `upstream.py` (which owns the connection) so the rules read in one place and are
unit-tested without a server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import Any

from tenacity import AsyncRetrying, retry_if_result, stop_after_attempt, stop_before_delay, wait_exponential_jitter

from libs.common.errors import ErrorKind
from libs.common.messages import CallOutcome

from .breaker import BreakerState, CircuitBreaker

__all__ = [
    "BREAKER_FAILURES",
    "Health",
    "circuit_open_message",
    "health_of",
    "retry_safe",
    "with_retries",
]

BREAKER_FAILURES = frozenset({ErrorKind.UPSTREAM_UNAVAILABLE, ErrorKind.UPSTREAM_TIMEOUT})
"""Outcomes that say the server is unwell. A tool's `isError` result, a JSON-RPC error and bad
arguments are the server (or we) answering, and never open the breaker."""

RETRY_INITIAL = 0.1
RETRY_MAX = 2.0


class Health(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    """Connected, breaker closed, but the last calls or pings failed."""
    OPEN = "open"
    """Connected, but the breaker refuses calls until a probe succeeds."""
    DOWN = "down"
    """No session."""
    NEEDS_AUTH = "needs_auth"
    """No session: the server answers HTTP 401 (credentials missing, wrong or expired)."""
    DISABLED = "disabled"
    """Configured off (such servers have no catalog entry; listed for consumers' completeness)."""


def health_of(connected: bool, breaker: CircuitBreaker, needs_auth: bool = False) -> Health:
    if not connected:
        return Health.NEEDS_AUTH if needs_auth else Health.DOWN
    if breaker.state is not BreakerState.CLOSED:
        return Health.OPEN
    return Health.DEGRADED if breaker.failures else Health.HEALTHY


def retry_safe(definition: Mapping[str, Any] | None) -> bool:
    """A call may be re-sent only when the server says doing it twice does no harm: the tool is
    annotated `idempotentHint: true` or `readOnlyHint: true`. Absent annotations mean no."""
    annotations = (definition or {}).get("annotations")
    if not isinstance(annotations, Mapping):
        return False
    return annotations.get("idempotentHint") is True or annotations.get("readOnlyHint") is True


def circuit_open_message(server: str, seconds_to_probe: float) -> str:
    when = f"in {seconds_to_probe:.1f} seconds" if seconds_to_probe > 0 else "with the next call"
    return (
        f"server {server!r} failed repeatedly, so its circuit breaker is open and calls fail at once;"
        f" the executor will try it again {when}"
    )


def _retryable(outcome: CallOutcome) -> bool:
    return outcome.error is not None and outcome.error.kind is ErrorKind.UPSTREAM_UNAVAILABLE


async def with_retries(
    attempt: Callable[[], Awaitable[CallOutcome]],
    *,
    retries: int,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    initial: float = RETRY_INITIAL,
) -> CallOutcome:
    """Run `attempt` and re-run it after a connection failure (exponential backoff with jitter),
    at most `retries` more times and never past `deadline` (a `clock()` reading): a retry whose
    backoff would end after the deadline is not started, and the last outcome is returned."""
    first = await attempt()
    if retries <= 0 or not _retryable(first):
        return first  # the common case: no retry machinery built (it costs more than the call's own work)
    retrying = AsyncRetrying(
        stop=stop_after_attempt(retries + 1) | stop_before_delay(max(0.0, deadline - clock())),
        wait=wait_exponential_jitter(multiplier=initial, max=RETRY_MAX, jitter=initial),
        retry=retry_if_result(_retryable),
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        sleep=asyncio.sleep,
    )

    outcomes = iter([first])

    async def once() -> CallOutcome:  # tenacity awaits only what it sees is a coroutine function
        return next(outcomes, None) or await attempt()  # its first attempt is the one made above

    return await retrying(once)
