"""A timetable of actions run by one loop timer, each late by at most a slack, never early.

The relay's requester and acknowledger (`relay`, `acknowledger`) are due looks at every call (its next
probe, its deadline, its acknowledgement) that almost never happen, because the answer comes first; a
timer armed and cancelled per call would cost more than the call's bookkeeping.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
from collections.abc import Callable
from typing import Any

__all__ = ["SLACK", "Timetable"]

SLACK = 0.05
"""Seconds a look at a call may come late (`Timetable`): probes come every second, timeouts are
seconds long, and an acknowledgement is due `ack_margin` before its requester would give up."""


class Timetable:
    """Actions due at given times, run by one loop timer.

    A timer armed and cancelled per request costs more than the request's bookkeeping itself. Each time
    the timer fires it runs every action due by then, and it fires `slack` seconds after the earliest
    action, so under load one firing serves the actions of many requests.

    Nearly every action comes a fixed delay after its request (the probe interval, `ack_after`),
    so each is due no sooner than the one before it: those queue in arrival order (an append and a
    pop, half a heap's push and pop); an action due sooner than the queue's last goes to the heap."""

    def __init__(self, slack: float) -> None:
        self._slack = slack
        self._queue: collections.deque[tuple[float, Callable[[Any], object], Any, asyncio.Future[Any] | None]] = (
            collections.deque()
        )
        self._heap: list[tuple[float, int, Callable[[Any], object], Any, asyncio.Future[Any] | None]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def at(
        self, delay: float, action: Callable[[Any], object], arg: Any, unless: asyncio.Future[Any] | None = None
    ) -> None:
        """Run `action(arg)` `delay` seconds from now, or at most `slack` seconds later.

        Unless `unless` (a future, or the task of the call the action looks at) is done by then: nothing
        runs for it, so a look that usually finds its call finished costs no Python call (`wake_at`, the
        acknowledger's `watch`)."""
        # the loop of the future looked at is the running one; asking for it costs no `getpid` (CPython 3.11
        # makes one per `get_running_loop`)
        loop = unless.get_loop() if unless is not None else asyncio.get_running_loop()
        when = loop.time() + delay
        queue = self._queue
        if not queue or queue[-1][0] <= when:
            queue.append((when, action, arg, unless))
        else:
            heapq.heappush(self._heap, (when, next(self._order), action, arg, unless))
        if self._timer is None or when + self._slack < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._arm(loop, when + self._slack)

    def wake_at(self, delay: float, future: asyncio.Future[None]) -> None:
        """Resolve `future` `delay` seconds from now (at most `slack` later) unless it is done by then.

        A waiter's look that usually finds it answered already (the relay's requests) costs no call then."""
        self.at(delay, future.set_result, None, future)

    def __len__(self) -> int:
        """Actions waiting (run or not yet)."""
        return len(self._queue) + len(self._heap)

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        self._timer, self._timer_at = loop.call_at(at, self._fire, loop), at  # `_fire` runs on `loop`

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        queue, heap = self._queue, self._heap
        now = loop.time()
        while queue and queue[0][0] <= now:
            _, action, arg, unless = queue.popleft()
            if unless is None or not unless.done():
                action(arg)
        while heap and heap[0][0] <= now:
            _, _, action, arg, unless = heapq.heappop(heap)
            if unless is None or not unless.done():
                action(arg)
        firsts = [waiting[0][0] for waiting in (queue, heap) if waiting]
        if firsts and self._timer is None:
            self._arm(loop, min(firsts) + self._slack)
