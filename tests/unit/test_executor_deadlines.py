"""Call deadlines on shared timers (`services.executor.upstreams.deadlines`) behave as `asyncio.timeout_at`.

Each scenario runs with both, on asyncio's own loop and on uvloop (the services' loop): a deadline
that passes is a `TimeoutError`, never before it; a cancellation from elsewhere stays a cancellation;
calls due in the same tick share one timer, and no timer outlives its calls."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from services.executor.upstreams.deadlines import Deadlines

pytestmark = pytest.mark.unit

Keep = Callable[[float, Awaitable[Any]], Coroutine[Any, Any, Any]]


def shared(deadlines: Deadlines) -> Keep:
    """`work` within `when`, as `mcp_calls._Outgoing.send` keeps its deadline."""

    async def keep(when: float, work: Awaitable[Any]) -> Any:
        kept = deadlines.start(when)
        error: BaseException | None = None
        try:
            return await work
        except BaseException as exc:
            error = exc
            raise
        finally:
            deadlines.end(kept, error)

    return keep


async def asyncio_timeout(when: float, work: Awaitable[Any]) -> Any:
    async with asyncio.timeout_at(when):
        return await work


Scenario = Callable[[Keep, Deadlines], Awaitable[None]]
LOOPS = {"asyncio": asyncio.run, "uvloop": uvloop.run}
GRAIN = 0.001
"""uvloop's clock and timers count whole milliseconds: "not before `when`" holds to that grain."""


def alike(scenario: Scenario) -> Callable[[str, str], None]:
    """`scenario` with the shared timers and with `asyncio.timeout_at`, on both loops."""

    @pytest.mark.parametrize("loop", sorted(LOOPS))
    @pytest.mark.parametrize("kind", ["shared", "asyncio"])
    def test(kind: str, loop: str) -> None:
        deadlines = Deadlines()

        async def run() -> None:
            failures: list[dict[str, Any]] = []
            asyncio.get_running_loop().set_exception_handler(lambda _, context: failures.append(context))
            await scenario(shared(deadlines) if kind == "shared" else asyncio_timeout, deadlines)
            assert deadlines.timers == 0  # none outlives its calls
            assert failures == []  # no timer callback failed

        LOOPS[loop](run())

    test.__name__ = test.__qualname__ = scenario.__name__
    test.__doc__ = scenario.__doc__
    return test


@alike
async def test_work_past_its_deadline_is_a_timeout_and_never_before_it(keep: Keep, deadlines: Deadlines) -> None:
    loop = asyncio.get_running_loop()
    when = loop.time() + 0.02
    with pytest.raises(TimeoutError):
        await keep(when, asyncio.sleep(10))
    assert loop.time() >= when - GRAIN
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # its own cancellation taken back
    assert await keep(loop.time() + 60, asyncio.sleep(0, "after")) == "after"  # the task goes on


@alike
async def test_a_deadline_already_past_times_out_at_the_first_wait(keep: Keep, deadlines: Deadlines) -> None:
    with pytest.raises(TimeoutError):
        await keep(asyncio.get_running_loop().time() - 1, asyncio.sleep(10))


@alike
async def test_calls_due_together_each_end_on_their_own(keep: Keep, deadlines: Deadlines) -> None:
    """Two calls in one tick: the first ending leaves the other's deadline standing."""
    loop = asyncio.get_running_loop()
    when = loop.time() + 0.05
    quick = asyncio.create_task(keep(when, asyncio.sleep(0, "quick")))
    slow = asyncio.create_task(keep(when, asyncio.sleep(10)))
    await asyncio.sleep(0)
    if keep is not asyncio_timeout:
        assert deadlines.timers == 1  # one timer for both
    assert await quick == "quick"
    with pytest.raises(TimeoutError):
        await slow
    assert loop.time() >= when - GRAIN


@alike
async def test_a_call_ended_in_time_leaves_no_timer_to_fire(keep: Keep, deadlines: Deadlines) -> None:
    loop = asyncio.get_running_loop()
    when = loop.time() + 0.01
    assert await keep(when, asyncio.sleep(0, "done")) == "done"
    await asyncio.sleep(when + 0.02 - loop.time())  # past the deadline's tick: nothing fires, nothing is cancelled


@alike
async def test_a_cancellation_from_elsewhere_stays_a_cancellation(keep: Keep, deadlines: Deadlines) -> None:
    call = asyncio.create_task(keep(asyncio.get_running_loop().time() + 60, asyncio.sleep(10)))
    await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


@alike
async def test_a_cancellation_arriving_with_the_deadline_stays_a_cancellation(keep: Keep, deadlines: Deadlines) -> None:
    async def cancelled_again_as_it_times_out() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # someone else cancels the call just as its deadline does

    call = asyncio.create_task(keep(asyncio.get_running_loop().time() + 0.01, cancelled_again_as_it_times_out()))
    with pytest.raises(asyncio.CancelledError):
        await call
