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
