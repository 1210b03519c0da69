"""A call made while a gateway's executor is away: the executor is stopped, the call made, and once
the requester has sent it again (nobody was subscribed, `libs.common.bus.rejoin`) a new executor with the
same settings takes the stopped one's place."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from prometheus_client import REGISTRY

from services.executor.service import ExecutorService
from tests.support.gateway import Gateway
from tests.support.polling import poll_until

__all__ = ["answered_by_a_new_executor", "counted"]

T = TypeVar("T")


def counted(metric: str, labels: dict[str, str] | None = None) -> float:
    """A Prometheus counter of this process (0 before its first increment)."""
    return REGISTRY.get_sample_value(f"{metric}_total", labels or {}) or 0.0


async def answered_by_a_new_executor(
    gw: Gateway, call: Callable[[], Awaitable[T]], sent_again: Callable[[], float], resends: int = 1
) -> T:
    """`call()`'s answer, made while `gw`'s executor is stopped and answered by the one that takes its
    place, started only once `sent_again()` has grown by `resends` (a slow restart: more of them)."""
    executor = next(s for s in gw.services if isinstance(s, ExecutorService))
    await executor.stop()
    before = sent_again()
    waiting = asyncio.ensure_future(call())
    await poll_until(lambda: waiting.done() or sent_again() - before >= resends, "the call to be sent again")
    assert not waiting.done(), (
        f"the call was given up while the executor restarted: {waiting.exception() or waiting.result()!r}"
    )
    replacement = ExecutorService(executor.settings)
    await replacement.start()
    try:
        return await asyncio.wait_for(waiting, 30)
    finally:
        await replacement.stop()
