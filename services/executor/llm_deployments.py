"""What the executor knows of each deployment of a routed model.

Its breaker, its cool-down, its observed latency and what it was sent in the last minute; and the order a
request tries them in.

Kept per executor replica, in memory: a deployment another replica found down is found down here
by its own first failure. The `tpm` / `rpm` of a deployment are therefore per replica too
(docs/llm-routing.md says so); the key's own limits are counted in Valkey by policy.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from libs.common.contracts.llm import RoutedDeployment

from .breaker import CircuitBreaker

__all__ = ["DeploymentState", "Deployments", "ordered"]

_FAILURES_TO_OPEN = 3
"""Consecutive failures (connection, timeout, 5xx) that open a deployment's breaker."""
_LATENCY_WEIGHT = 0.2
"""Weight of the newest sample in the moving average of a deployment's latency."""
_WINDOW = 60.0
_MAX_TRACKED = 10_000
"""Deployments remembered at most (their names come from configuration, but bounded all the same)."""


@dataclass
class DeploymentState:
    breaker: CircuitBreaker
    clock: Callable[[], float] = time.monotonic
    cool_until: float = 0.0
    latency_ms: float | None = None
    sent: deque[list[float]] = field(default_factory=deque)
    """(when, tokens) of the requests sent in the last minute; tokens filled in when they are known."""

    def skip_reason(self, deployment: RoutedDeployment) -> str | None:
        """Why this deployment is not tried now, or None."""
        now = self.clock()
        if now < self.cool_until:
            return "cooling_down"
        self._forget(now)
        if deployment.rpm is not None and len(self.sent) >= deployment.rpm:
            return "rpm_limit"
        if deployment.tpm is not None and sum(tokens for _, tokens in self.sent) >= deployment.tpm:
            return "tpm_limit"
        if not self.breaker.allow():
            return "circuit_open"
        return None

    def wait(self) -> float:
        """Seconds until this deployment may be tried again (0: now, as far as is known)."""
        return max(self.cool_until - self.clock(), self.breaker.seconds_to_probe(), 0.0)

    def started(self) -> list[float]:
        """Counts a request sent: its [when, tokens] entry, tokens set once they are known."""
        entry = [self.clock(), 0.0]
        self.sent.append(entry)
        return entry

    def cool(self, seconds: float) -> None:
        self.cool_until = max(self.cool_until, self.clock() + seconds)

    def measured(self, ms: float) -> None:
        previous = self.latency_ms
        self.latency_ms = ms if previous is None else previous + _LATENCY_WEIGHT * (ms - previous)

    def _forget(self, now: float) -> None:
        while self.sent and self.sent[0][0] <= now - _WINDOW:
            self.sent.popleft()


class Deployments:
    """The state of every deployment this executor has sent a request to, by (provider, model)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._states: dict[tuple[str, str], DeploymentState] = {}

    def state(self, deployment: RoutedDeployment) -> DeploymentState:
        key = (deployment.provider, deployment.model)
        found = self._states.get(key)
        if found is None:
            if len(self._states) >= _MAX_TRACKED:
                self._states.clear()
            breaker = CircuitBreaker(_FAILURES_TO_OPEN, deployment.cooldown, clock=self._clock)
            found = self._states[key] = DeploymentState(breaker, self._clock)
        return found

    def latency(self, deployment: RoutedDeployment) -> float:
        """Observed latency (ms); 0 for a deployment not measured yet, so it is tried and measured."""
        state = self._states.get((deployment.provider, deployment.model))
        return 0.0 if state is None or state.latency_ms is None else state.latency_ms


def ordered(
    candidates: list[RoutedDeployment], deployments: Deployments, rng: random.Random | None = None
) -> list[RoutedDeployment]:
    """The order a request tries its deployments in.

    Route by route as given (the model asked for, then its fallbacks), each route's deployments by its
    strategy."""
    rng = rng or random.Random()
    groups: dict[str, list[RoutedDeployment]] = {}
    for deployment in candidates:
        groups.setdefault(deployment.route, []).append(deployment)
    result: list[RoutedDeployment] = []
    for group in groups.values():
        strategy = group[0].strategy
        if strategy == "weighted":
            # weighted sampling without replacement (Efraimidis-Spirakis): each key is u^(1/weight)
            result += sorted(group, key=lambda d: rng.random() ** (1.0 / d.weight), reverse=True)
        elif strategy == "latency":
            result += sorted(group, key=deployments.latency)
        else:
            result += sorted(group, key=lambda d: d.priority)
    return result
