"""A per-server circuit breaker: a pure state machine over an injected clock.

Why consecutive failures rather than a failure ratio over a window: an MCP server may see one call
a minute, and a ratio over a handful of samples is noise (one timeout in two calls is "50%"),
while a ratio needs a minimum-volume rule on top to be safe. N failures in a row, with nothing
succeeding in between, is the same signal whatever the traffic, and is what an operator can
reason about from a log. Only failures that say the *server* is unwell count (connection lost,
refused, timed out); a tool's `isError` result or a JSON-RPC error is the server answering.

    closed --N consecutive failures--> open --reset timeout--> half_open (one probe passes)
    half_open --probe succeeds--> closed;  half_open --probe fails--> open (timeout doubled)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from libs.common.contracts.messages import BreakerStatus

__all__ = ["BreakerState", "CircuitBreaker"]

_MAX_BACKOFF_FACTOR = 10.0
"""A server that keeps failing its probes is probed at most every ten reset timeouts."""


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Not thread-safe, and needs no lock under asyncio: no method awaits.

    `clock` returns seconds (monotonic by default; tests pass a fake one to step time by hand);
    `on_change` runs after every state change, so the owner can publish the new status."""

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._on_change = on_change
        self.state = BreakerState.CLOSED
        """An attribute, not a property: every call's `AskBreaker` reads it (changed here alone)."""
        self._failures = 0
        self._opens = 0
        """Consecutive times the breaker opened without closing in between (drives the backoff)."""
        self._probe_at = 0.0
        self._probing = False

    # ------------------------------------------------------------------ queries

    @property
    def failures(self) -> int:
        return self._failures

    def seconds_to_probe(self) -> float:
        """How long until an open breaker lets a probe through (0 when it would now)."""
        return max(0.0, self._probe_at - self._clock()) if self.state is not BreakerState.CLOSED else 0.0

    def status(self) -> BreakerStatus:
        probe_at = None
        if self.state is not BreakerState.CLOSED:
            probe_at = round(time.time() + self.seconds_to_probe(), 3)
        return BreakerStatus(state=self.state.value, failures=self._failures, probe_at=probe_at)

    # ------------------------------------------------------------------ transitions

    def configure(self, failure_threshold: int, reset_timeout: float) -> None:
        """New thresholds apply from the next failure; an open breaker keeps its probe time."""
        self.failure_threshold, self.reset_timeout = failure_threshold, reset_timeout

    def allow(self) -> bool:
        """May a call go to the server now?

        In half-open state exactly one caller gets True (the probe) until it reports back through
        `success`, `failure` or `release`."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if self._clock() < self._probe_at:
                return False
            self.state = BreakerState.HALF_OPEN
            self._probing = False
            self._changed()
        if self._probing:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        """The server answered (a result, a tool error, or a JSON-RPC error)."""
        changed = self.state is not BreakerState.CLOSED or self._failures != 0
        self.state, self._failures, self._opens, self._probing = BreakerState.CLOSED, 0, 0, False
        if changed:
            self._changed()

    def failure(self) -> None:
        """The server failed to answer: connection lost or refused, or a timeout."""
        self._failures += 1
        if self.state is BreakerState.HALF_OPEN or (
            self.state is BreakerState.CLOSED and self._failures >= self.failure_threshold
        ):
            self._open()
        self._changed()

    def release(self) -> None:
        """A probe ended without telling anything about the server (refused locally, cancelled).

        The next caller may probe instead."""
        self._probing = False

    def _open(self) -> None:
        factor = min(2.0**self._opens, _MAX_BACKOFF_FACTOR)
        self._opens += 1
        self.state = BreakerState.OPEN
        self._probing = False
        self._probe_at = self._clock() + self.reset_timeout * factor

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()
