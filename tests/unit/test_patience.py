"""The waits of every keep-trying loop (`libs.common.runtime.patience`): they grow to a cap, a success ends
them, a permanent error is raised, and a cancellation is never mistaken for a failure to retry."""

from __future__ import annotations

import asyncio

import pytest
from tenacity import RetryCallState, retry_if_exception

from libs.common.runtime.patience import patiently, until

pytestmark = pytest.mark.unit


async def test_waits_double_to_the_cap_and_a_success_ends_them() -> None:
    failures, waits = 6, list[float]()

    def noted(state: RetryCallState) -> None:
        assert state.next_action is not None
        waits.append(state.next_action.sleep)

    attempts = 0
    async for attempt in patiently(first=0.001, most=0.004, before_sleep=noted):
        with attempt:
            attempts += 1
            if attempts <= failures:
                raise ConnectionError("not yet")
    assert attempts == failures + 1
    assert len(waits) == failures
    assert all(0.001 <= wait <= 0.004 for wait in waits)
    assert max(waits[3:]) >= 0.004  # grown to the cap


async def test_an_error_the_caller_calls_permanent_is_raised_at_once() -> None:
    attempts = 0
    with pytest.raises(PermissionError):
        async for attempt in patiently(
            first=0.001,
            retry=retry_if_exception(lambda e: isinstance(e, OSError) and not isinstance(e, PermissionError)),
        ):
            with attempt:
                attempts += 1
                raise PermissionError("refused for good")
    assert attempts == 1


async def test_a_cancelled_task_stops_retrying() -> None:
    attempts, started = 0, asyncio.Event()

    async def keep_trying() -> None:
        nonlocal attempts
        async for attempt in patiently(first=0.001, most=0.001):
            with attempt:
                attempts += 1
                started.set()
                await asyncio.sleep(3600)

    task = asyncio.create_task(keep_trying())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert attempts == 1


async def test_until_returns_once_the_condition_holds() -> None:
    checks = 0

    def up() -> bool:
        nonlocal checks
        checks += 1
        return checks >= 4

    await until(up, first=0.001, most=0.002)
    assert checks == 4
