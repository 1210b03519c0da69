"""The one way tests wait for state they cannot subscribe to: poll a condition until it holds.

Prefer waiting on an event (an `asyncio.Event`, a notification, a message) when the code under
test offers one; poll only state that changes without telling anyone (a KV view, a process table,
a catalog filled by a watch). Every wait is bounded and fails naming what it waited for.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["poll_until", "poll_until_blocking"]

T = TypeVar("T")

WITHIN = 30.0
"""Default upper bound in seconds; a passing wait returns as soon as its condition holds."""


async def poll_until(
    condition: Callable[[], T | Awaitable[T]], what: str, within: float = WITHIN, every: float = 0.02
) -> T:
    """The first truthy value of `condition()` (a plain or an async callable), checked every `every` s."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]  # awaited above: no longer an Awaitable
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(every)


def poll_until_blocking(condition: Callable[[], T], what: str, within: float = WITHIN, every: float = 0.05) -> T:
    """`poll_until` for code outside an event loop (subprocesses, /proc)."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        time.sleep(every)
