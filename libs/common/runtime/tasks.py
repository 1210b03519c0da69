"""Background tasks a service or helper owns, and their end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["cancel_and_wait", "cancel_requested", "every", "stop_if_cancelled"]


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (None: never started) and wait for it to end, so nothing it still holds outlives its owner's stop.

    An error other than the cancellation comes out here."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def every(seconds: float, work: Callable[[], Awaitable[object]], what: str) -> None:
    """Run `work` every `seconds` until cancelled.

    A round that fails is logged (`what` failed) and the next one tries again. It stops once cancelled
    even when the cancel landed inside `work` and came out as another error, or as nothing (a NATS
    request can turn it into a timeout, and Python 3.11's `wait_for` can drop it): a loop that slept
    again would never let `stop()` end."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await work()
        except Exception as exc:
            log.warning("%s failed: %s", what, type(exc).__name__)
        stop_if_cancelled()


def stop_if_cancelled() -> None:
    """Raise `CancelledError` when the running task was asked to stop.

    Though the cancel itself may have been lost on the way (nats-py turns it into a timeout error; Python
    3.11's `wait_for` drops it when its inner future completes at the same moment). A loop that goes on
    after such a loss would make its owner's `stop()` wait forever."""
    if cancel_requested():
        raise asyncio.CancelledError


def cancel_requested() -> bool:
    """Whether the running task was asked to stop, whatever became of the cancel (`stop_if_cancelled`)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
