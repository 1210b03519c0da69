"""How an upstream's connection task paces its attempts.

Exponential backoff with jitter, through tenacity, reset by a session that worked long enough.

One round of `keep_reconnecting` is a tenacity `AsyncRetrying` over connection attempts: an attempt
that fails (or whose session was lost soon after it opened) raises `Backoff` and the next waits
`backoff_delay(n)`; an attempt whose session lived long enough returns, and the next round starts
at once with the count back at zero (its loss is news, not a crash loop).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import NoReturn

import anyio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

__all__ = ["Backoff", "backoff_delay", "keep_reconnecting"]


class Backoff(Exception):
    """An attempt that did not lead to a session worth trusting: wait before the next one."""


def backoff_delay(failures: int, cap: float, *, base: float = 0.5, rng: Callable[[], float] = random.random) -> float:
    """Delay before reconnect attempt number `failures` (0 = retry at once after a working session dropped).

    Exponential from `base`, capped at `cap`, with jitter in [50%, 100%] so replicas and servers that
    failed together do not retry in lockstep. (tenacity's own jittered waits add jitter on top of the
    ceiling or draw from zero; this keeps every delay within half of it.)"""
    if failures <= 0:
        return 0.0
    ceiling = min(cap, base * 2.0 ** min(failures - 1, 32))
    return ceiling * (0.5 + 0.5 * rng())


async def keep_reconnecting(attempt: Callable[[], Awaitable[None]], cap: float) -> NoReturn:
    """Run `attempt` for ever (until cancelled).

    After it raises `Backoff` wait `backoff_delay` of the failures in a row (at most `cap` seconds),
    after it returns go again at once. Anything else it raises ends the loop (a bug, not a server's
    failure)."""

    def wait(state: RetryCallState) -> float:
        return backoff_delay(state.attempt_number, cap)

    while True:
        retrying = AsyncRetrying(wait=wait, retry=retry_if_exception_type(Backoff), sleep=anyio.sleep)
        await retrying(attempt)
