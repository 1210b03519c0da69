"""The relay's timetable (`timetable.Timetable`): every action runs once, never before it is due,
whether it queued behind the ones before it or came due sooner than they did."""

from __future__ import annotations

import asyncio

import pytest

from libs.common.bus.timetable import Timetable

pytestmark = pytest.mark.unit


async def test_every_action_runs_once_and_never_early() -> None:
    loop = asyncio.get_running_loop()
    table = Timetable(slack=0.01)
    ran: list[tuple[str, float]] = []
    due: dict[str, float] = {}
    done = loop.create_future()

    def act(name: str) -> None:
        ran.append((name, loop.time()))
        if len(ran) == len(due):
            done.set_result(None)

    for name, delay in [("a", 0.05), ("b", 0.05), ("c", 0.01), ("d", 0.08), ("e", 0.0), ("f", 0.03)]:
        due[name] = loop.time() + delay  # c, e, f come due before the queue's last: the heap's
        table.at(delay, act, name)
    await asyncio.wait_for(done, 10)
    assert sorted(name for name, _ in ran) == sorted(due)
    assert all(at >= due[name] for name, at in ran)
    assert len(table) == 0
    await asyncio.sleep(0.05)  # no firing left to run anything twice
    assert len(ran) == len(due)


async def test_a_future_is_woken_when_due_unless_it_is_done_by_then() -> None:
    loop = asyncio.get_running_loop()
    table = Timetable(slack=0.01)
    waiting, answered, cancelled = loop.create_future(), loop.create_future(), loop.create_future()
    due = loop.time() + 0.02
    for future in (answered, cancelled, waiting):  # the waiting one last: the others must not stop the firing
        table.wake_at(0.02, future)
    answered.set_result("the answer")
    cancelled.cancel()

    await asyncio.wait_for(waiting, 10)

    assert loop.time() >= due and waiting.result() is None
    assert answered.result() == "the answer" and cancelled.cancelled()  # left as they were, nothing raised
    assert len(table) == 0


async def test_an_action_is_skipped_when_the_call_it_looks_at_is_done_by_then() -> None:
    """The acknowledger's looks (`Acknowledger.watch`): one whose call finished first runs nothing, in the
    queue and in the heap alike; one whose call still runs is run."""
    loop = asyncio.get_running_loop()
    table = Timetable(slack=0.01)
    ran: list[str] = []
    finished, running, last = loop.create_future(), loop.create_future(), loop.create_future()
    table.at(0.03, ran.append, "queued, finished", finished)
    table.at(0.03, ran.append, "queued, running", running)
    table.at(0.01, ran.append, "heap, finished", finished)  # due sooner than the queue's last: the heap's
    table.at(0.01, ran.append, "heap, running", running)
    table.at(0.04, last.set_result, None)
    finished.set_result(None)

    await asyncio.wait_for(last, 10)

    assert sorted(ran) == ["heap, running", "queued, running"]
    assert len(table) == 0
