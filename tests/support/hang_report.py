"""When a test is about to hit pytest-timeout, print what every asyncio task is waiting on.

pytest-timeout dumps the threads' stacks, and a hung asyncio test shows only its event loop idle
in `select()`: the await that never completes is in a task's stack, which only the loop can show.
So shortly before the timeout, each test's loop prints every task's stack to stderr (captured into
the test's report)."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator

import pytest

__all__ = ["hang_report"]

_AHEAD = 15.0
"""Seconds before pytest-timeout fires that the tasks are printed."""


def _print_tasks(nodeid: str) -> None:
    tasks = [task for task in asyncio.all_tasks() if not task.done()]
    print(f"\n+++ {nodeid}: {len(tasks)} asyncio tasks still pending near the timeout +++", file=sys.stderr)
    for task in tasks:
        task.print_stack(limit=12, file=sys.stderr)


def _timeout(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    return float(item.config.getini("timeout") or 0)


@pytest.fixture(autouse=True)
async def hang_report(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    timeout = _timeout(request.node)
    if timeout <= _AHEAD:
        yield
        return
    loop = asyncio.get_running_loop()
    timer = threading.Timer(timeout - _AHEAD, lambda: loop.call_soon_threadsafe(_print_tasks, request.node.nodeid))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
