"""The circuit breaker alone, on a fake clock, and the retry / health rules around it."""

from __future__ import annotations

import asyncio

import pytest

from libs.common.contracts.config import ServerConfig
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import CallOutcome, GatewayError
from services.executor.breaker import BreakerState, CircuitBreaker
from services.executor.resilience import Health, RetryPlan, circuit_open_message, health_of, retry_safe

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(threshold: int = 3, reset: float = 10.0) -> tuple[CircuitBreaker, Clock, list[int]]:
    clock, changes = Clock(), []
    return CircuitBreaker(threshold, reset, clock=clock, on_change=lambda: changes.append(1)), clock, changes


def test_opens_after_consecutive_failures_only() -> None:
    b, _, _ = breaker(threshold=3)
    b.failure()
    b.failure()
    b.success()  # a success in between starts the count again
    b.failure()
    b.failure()
    assert b.state is BreakerState.CLOSED and b.allow()
    b.failure()
    assert b.state is BreakerState.OPEN and not b.allow()


def test_half_open_lets_exactly_one_probe_through() -> None:
    b, clock, _ = breaker(threshold=1, reset=10)
    b.failure()
    clock.now += 9.9
    assert not b.allow()
    assert b.seconds_to_probe() == pytest.approx(0.1)
    clock.now += 0.1
    assert b.allow()  # the probe
    assert b.state is BreakerState.HALF_OPEN
    assert not b.allow() and not b.allow()  # everyone else waits for its verdict
    b.success()
    assert b.state is BreakerState.CLOSED and b.failures == 0 and b.allow()


def test_failed_probe_reopens_with_backoff_capped() -> None:
    b, clock, _ = breaker(threshold=1, reset=10)
    b.failure()
    waits = []
    for _ in range(6):
        waits.append(b.seconds_to_probe())
        clock.now += b.seconds_to_probe()
        assert b.allow()
        b.failure()
        assert b.state is BreakerState.OPEN
    assert waits == [10, 20, 40, 80, 100, 100]
    clock.now += b.seconds_to_probe()
    assert b.allow()
    b.success()
    b.failure()  # closed again, and the backoff starts over
    assert b.seconds_to_probe() == 10


def test_released_probe_lets_the_next_caller_probe() -> None:
    b, clock, _ = breaker(threshold=1, reset=1)
    b.failure()
    clock.now += 1
    assert b.allow()
    b.release()
    assert b.allow()
    assert b.state is BreakerState.HALF_OPEN


def test_changes_are_reported_and_status_is_published_shape() -> None:
    b, _, changes = breaker(threshold=2)
    b.success()
    assert changes == []  # nothing changed: no catalog write
    b.failure()
    assert len(changes) == 1
    assert b.status().state == "closed" and b.status().failures == 1
    b.failure()
    status = b.status()
    assert status.state == "open" and status.probe_at is not None


def test_reconfigure_applies_to_the_next_failure() -> None:
    b, _, _ = breaker(threshold=5)
    b.failure()
    b.configure(failure_threshold=2, reset_timeout=1)
    b.failure()
    assert b.state is BreakerState.OPEN


def test_health_of() -> None:
    b, _, _ = breaker(threshold=2)
    assert health_of(True, b) is Health.HEALTHY
    assert health_of(False, b) is Health.DOWN
    b.failure()
    assert health_of(True, b) is Health.DEGRADED
    b.failure()
    assert health_of(True, b) is Health.OPEN
    assert health_of(False, b) is Health.DOWN


def test_retry_safe_needs_an_explicit_hint() -> None:
    assert retry_safe({"annotations": {"readOnlyHint": True}})
    assert retry_safe({"annotations": {"idempotentHint": True, "readOnlyHint": False}})
    assert not retry_safe({"annotations": {"idempotentHint": False}})
    assert not retry_safe({"annotations": {"destructiveHint": False}})
    assert not retry_safe({"name": "x"})
    assert not retry_safe(None)


def test_circuit_open_message_names_server_and_time() -> None:
    text = circuit_open_message("github", 12.34)
    assert "'github'" in text and "12.3 seconds" in text


def test_config_defaults_and_validation() -> None:
    config = ServerConfig(command="x")
    assert config.retries == 2
    assert config.circuit_breaker.failure_threshold == 5 and config.circuit_breaker.reset_timeout == 30
    tuned = ServerConfig.model_validate({"command": "x", "circuit_breaker": {"failure_threshold": 1}, "retries": 0})
    assert tuned.circuit_breaker.failure_threshold == 1 and tuned.retries == 0
    with pytest.raises(ValueError):
        ServerConfig.model_validate({"command": "x", "circuit_breaker": {"failure_treshold": 1}})


def _outcome(kind: ErrorKind | None) -> CallOutcome:
    error = GatewayError(kind=kind, message="m") if kind else None
    return CallOutcome(id="c", error=error, result=None if kind else {"content": []}, decided_by="executor")


async def _run(kinds: list[ErrorKind | None], retries: int, deadline: float = 100.0) -> tuple[CallOutcome, int]:
    attempts = 0

    async def attempt() -> CallOutcome:
        nonlocal attempts
        attempts += 1
        return _outcome(kinds[min(attempts - 1, len(kinds) - 1)])

    plan = RetryPlan(retries, deadline, clock=lambda: 0.0, initial=0.001)
    outcome = await attempt()
    while (pause := plan.pause(outcome)) is not None:  # as the call path's `Retry` step goes round
        await asyncio.sleep(pause)
        outcome = await attempt()
    return outcome, attempts


async def test_retries_connection_failures_until_success() -> None:
    outcome, attempts = await _run([ErrorKind.UPSTREAM_UNAVAILABLE, ErrorKind.UPSTREAM_UNAVAILABLE, None], 2)
    assert outcome.error is None and attempts == 3


async def test_retries_are_bounded_and_return_the_last_outcome() -> None:
    outcome, attempts = await _run([ErrorKind.UPSTREAM_UNAVAILABLE], 2)
    assert outcome.error is not None and outcome.error.kind is ErrorKind.UPSTREAM_UNAVAILABLE and attempts == 3


@pytest.mark.parametrize(
    "kind", [ErrorKind.UPSTREAM_TIMEOUT, ErrorKind.UPSTREAM_ERROR, ErrorKind.INVALID_ARGUMENTS, ErrorKind.CIRCUIT_OPEN]
)
async def test_other_failures_are_never_retried(kind: ErrorKind) -> None:
    outcome, attempts = await _run([kind, None], 2)
    assert attempts == 1 and outcome.error is not None and outcome.error.kind is kind


async def test_no_retry_past_the_deadline() -> None:
    outcome, attempts = await _run([ErrorKind.UPSTREAM_UNAVAILABLE, None], 5, deadline=0.0)
    assert attempts == 1 and outcome.error is not None


async def test_zero_retries_runs_once() -> None:
    _, attempts = await _run([ErrorKind.UPSTREAM_UNAVAILABLE, None], 0)
    assert attempts == 1
