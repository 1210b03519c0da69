"""Background tasks a service or helper owns, and their end."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (None: never started) and wait for it to end, so nothing it still holds outlives
    its owner's stop. An error other than the cancellation comes out here."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
