"""Waiting out a failure that will pass (NATS away, a stream leader moving), through tenacity.

Two shapes cover every loop that must keep trying until it can go on:

- `patiently(...)`: a tenacity `AsyncRetrying` that retries forever, with waits doubling from
  `first` to `most` (jittered, so replicas that failed together do not retry in step) and an
  optional callback before each sleep. A new one starts from `first` again: callers that run
  "forever, resetting on success" make one per round.
- `until(condition, ...)`: the same waits, polling a condition that has no call to retry (is the
  connection up?).

What is retried and when to give up stays at the call site (`retry=`): only the caller knows which
errors are for good (a refused audit batch is split or dead-lettered, not retried).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_result,
    stop_never,
)
from tenacity.retry import retry_base

__all__ = ["patiently", "until"]


def _waits(first: float, most: float) -> Callable[[RetryCallState], float]:
    """`first` doubled per attempt plus up to `first` of jitter, at most `most`.

    Written out, not `wait_exponential_jitter`, whose arguments changed name between tenacity 9.1 and 9.2
    (the google-genai SDK the tests use holds tenacity below 9.2)."""

    def wait(state: RetryCallState) -> float:
        return min(most, first * 2.0 ** (state.attempt_number - 1) + random.uniform(0, first))

    return wait


def patiently(
    *,
    first: float = 0.05,
    most: float = 2.0,
    retry: retry_base | None = None,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> AsyncRetrying:
    """Retry forever.

    (`retry`: any exception by default; the last error is re-raised when `retry` says no), waiting
    `first`, then twice that, up to `most` seconds."""
    return AsyncRetrying(
        wait=_waits(first, most),
        retry=retry or retry_if_exception_type(Exception),
        stop=stop_never,
        reraise=True,
        before_sleep=before_sleep,
    )


async def until(condition: Callable[[], bool], *, first: float = 0.05, most: float = 2.0) -> None:
    """Return once `condition()` holds, checking again after waits that double up to `most`."""

    async def check() -> bool:  # tenacity awaits only what it sees is a coroutine function
        return condition()

    if not condition():
        await AsyncRetrying(wait=_waits(first, most), retry=retry_if_result(lambda held: not held), stop=stop_never)(
            check
        )
