"""What a call's failure means for the next one.

Which outcomes count against the breaker, which may be re-sent, and the health an upstream reports.

Kept apart from `upstream.py` (which owns the connection) so the rules read in one place and are
unit-tested without a server.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import CallOutcome

from .breaker import BreakerState, CircuitBreaker

__all__ = [
    "BREAKER_FAILURES",
    "Health",
    "RetryPlan",
    "circuit_open_message",
    "health_of",
    "retry_safe",
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
    """A call may be re-sent only when the server says doing it twice does no harm.

    The tool is annotated `idempotentHint: true` or `readOnlyHint: true`. Absent annotations mean no."""
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


class RetryPlan:
    """How often a call whose connection failed is tried again.

    At most `retries` more times, after an exponential backoff with jitter, and never past `deadline` (a
    `clock()` reading): a retry whose backoff would end after the deadline is not started."""

    __slots__ = ("_clock", "_deadline", "_initial", "_started", "_window", "retries", "tries")

    def __init__(
        self,
        retries: int,
        deadline: float,
        clock: Callable[[], float] = time.monotonic,
        initial: float = RETRY_INITIAL,
    ) -> None:
        self.retries, self._deadline, self._clock, self._initial = retries, deadline, clock, initial
        self.tries = 1
        """Tries made so far, the one under way included."""
        self._started: float | None = None
        self._window = 0.0

    def pause(self, outcome: CallOutcome) -> float | None:
        """Seconds to wait before trying `outcome`'s call again; None: `outcome` is the answer."""
        if self.tries > self.retries or not _retryable(outcome):
            return None
        now = self._clock()
        if self._started is None:  # the time left is measured once, when retrying begins
            self._started, self._window = now, max(0.0, self._deadline - now)
        backoff = self._initial * 2.0 ** (self.tries - 1) + random.uniform(0, self._initial)
        backoff = max(0.0, min(backoff, RETRY_MAX))
        if now - self._started + backoff >= self._window:
            return None
        self.tries += 1
        return backoff
