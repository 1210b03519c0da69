"""Call deadlines on shared timers: the calls of a session due within the same few milliseconds share one.

`asyncio.timeout_at` sets and cancels an event-loop timer per call (~4 µs of CPU under uvloop, with
ten Python calls around it); the calls in flight on a session end close together (their budgets are
alike), so one timer per `TICK` serves them all, set when the first of them starts and cancelled when
the last one ends before it. A deadline fires at most `TICK` late, well inside what a call's budget
keeps for its answer to reach ingress (`budgets.REPLY_MARGIN`). A call sees what `asyncio.timeout_at`
gives it: `TimeoutError` when its deadline cancelled it, the cancellation itself when something else did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["TICK", "Deadlines", "Kept"]

TICK = 0.005
"""Seconds a shared timer covers: deadlines are rounded up to a multiple of it."""


class _Due:
    """The tasks due at one tick, and its timer."""

    __slots__ = ("fired", "handle", "key", "tasks")

    def __init__(self, key: int, loop: asyncio.AbstractEventLoop, fire: Callable[[_Due], None]) -> None:
        self.key = key
        self.fired = False
        self.tasks: dict[asyncio.Task[Any], None] = {}
        self.handle = loop.call_at(key * TICK, fire, self)


Kept = tuple[_Due, asyncio.Task[Any], int]
"""What `Deadlines.start` hands `Deadlines.end`: the tick, the task, its cancellations before."""


class Deadlines:
    """The deadlines of one event loop's calls (one upstream session's), by the tick they fall in.

    `start` and `end` pair around the awaited work, `end` in a `finally`; one pair at a time per task."""

    def __init__(self) -> None:
        self._due: dict[int, _Due] = {}

    @property
    def timers(self) -> int:
        """Shared timers set now."""
        return len(self._due)

    def start(self, when: float) -> Kept:
        """The current task is cancelled at event-loop time `when` (at most `TICK` later) unless it ends first."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline is kept for a task")
        key = -int(-when // TICK)  # the first tick at or after `when`
        due = self._due[key] if key in self._due else self._set(key, task.get_loop())
        due.tasks[task] = None
        return due, task, task.cancelling()

    def end(self, kept: Kept, error: BaseException | None) -> None:
        """The work ended (with `error`, if it raised).

        `TimeoutError` instead of the cancellation its deadline caused."""
        due, task, cancelling = kept
        del due.tasks[task]
        if due.fired:
            # as asyncio.Timeout: our cancellation is taken back; TimeoutError unless another one is pending
            if task.uncancel() <= cancelling and isinstance(error, asyncio.CancelledError):
                raise TimeoutError from error
        elif not due.tasks:
            due.handle.cancel()
            del self._due[due.key]

    def _set(self, key: int, loop: asyncio.AbstractEventLoop) -> _Due:
        due = self._due[key] = _Due(key, loop, self._fire)
        return due

    def _fire(self, due: _Due) -> None:
        del self._due[due.key]
        due.fired = True
        for task in due.tasks:
            task.cancel()
