"""A test that leaves an embedded ClickHouse connection, an asyncio task or a thread behind fails,
and what it left is ended.

The pytest process (one per xdist worker) is shared by every test that runs in it, and so is its
event loop (pyproject.toml: the session's), and three kinds of state outlive a test unless someone
ends them: a chdb connection (the engine is one per process, on one path at a time: while a
connection to a test's store stays open, every later test's store on another path is refused, and
each such test waits out its timeouts), a task on the loop (a service's loop still consuming, still
retrying) and a thread (a server loop, a worker blocked on something that will not come). So after
each test, what it opened and left open is ended here and reported as the test's error, naming it;
the tests after it start clean. A thread cannot be stopped from outside: it fails the test that
left it, once.

A test that uses a fixture wider than itself (module, package, session) may legitimately leave
state for the next test of that fixture: such a test is checked at the end of its module instead,
after the module's fixtures have been torn down. State that was there before (a session fixture's)
is never counted, nor nats-py's tasks (`nats_leaks` ends those, per module).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator

import pytest
from chdb.state import sqlitelike

__all__ = ["leaks_checked", "leaks_per_module", "leaks_per_test"]

_SETTLE = 2.0
"""Seconds threads a test started may take to finish an exit already under way before they count as leaked."""

_HARNESS = frozenset(
    {"leaks_per_module", "nats_leaks", "event_loop_policy", "tmp_path_factory", "worker_id", "testrun_uid"}
    | {"leaks_per_package"}  # a test package's own check (tests/integration/console/conftest.py)
    | {"tool_schemas_dir"}  # a folder of links
)
"""Fixtures of a wide scope that hold no state of the test's: the harness's own and pytest's."""

_connections: weakref.WeakSet[sqlitelike.Connection] = weakref.WeakSet()
_reported: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
"""Threads already reported: a thread cannot be stopped from outside, and it fails only the test that left it."""
_opened = sqlitelike.Connection.__init__


def _tracked(self: sqlitelike.Connection, connection_string: str) -> None:
    _opened(self, connection_string)
    _connections.add(self)


# Tracking by construction: finding them by a heap walk after every test would cost more than most tests.
sqlitelike.Connection.__init__ = _tracked  # type: ignore[method-assign]


def _open_connections() -> set[sqlitelike.Connection]:
    return {conn for conn in list(_connections) if conn._conn is not None}


def _live_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.is_alive()}


def _session_executor(thread: threading.Thread) -> bool:
    """The event loop's default executor (`asyncio.to_thread`): the session's loop keeps its idle
    workers, and a worker still busy is what `hang_report` and the test's own timeout show."""
    return thread.name.startswith("asyncio_")


def _tasks() -> set[asyncio.Task[object]]:
    """The running loop's pending tasks but the current one and nats-py's (`nats_leaks` ends those)."""
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current and not _of_nats(task)}


def _of_nats(task: asyncio.Task[object]) -> bool:
    # by the coroutine's code, not its frame's `self`: a task not yet started or finishing (nats-py's
    # `_attempt_reconnect` after its server stopped) may show no frame locals
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and f"{os.sep}nats{os.sep}" in code.co_filename


def _describe(task: asyncio.Task[object]) -> str:
    coro = task.get_coro()
    return f"asyncio task {task.get_name()!r} ({getattr(coro, '__qualname__', coro)})"


async def _ended(tasks: set[asyncio.Task[object]]) -> list[str]:
    """`tasks` that do not finish within `_SETTLE`, described, and cancelled."""
    if tasks:
        await asyncio.wait(tasks, timeout=_SETTLE)
    left = [task for task in tasks if not task.done()]
    for task in left:
        task.cancel()
    if left:
        await asyncio.wait(left, timeout=_SETTLE)
    return [_describe(task) for task in left]


class _Before:
    def __init__(self) -> None:
        self.connections = _open_connections()
        self.threads = _live_threads()
        self.tasks = _tasks()

    async def leaks(self) -> list[str]:
        """What was opened since and is still open, each described; connections and tasks are ended now."""
        found = await _ended(_tasks() - self.tasks)
        for conn in _open_connections() - self.connections:
            found.append("an embedded ClickHouse (chdb) connection")
            conn.close()
        started = [t for t in _live_threads() - self.threads if not _session_executor(t) and t not in _reported]
        deadline = time.monotonic() + _SETTLE
        for thread in started:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [thread for thread in started if thread.is_alive()]
        _reported.update(alive)
        return found + [f"thread {t.name!r} ({'daemon' if t.daemon else 'not daemon'})" for t in alive]


def _fail(where: str, leaked: list[str]) -> None:
    pytest.fail(
        f"{where} left {len(leaked)} thing(s) running: {'; '.join(sorted(leaked))}. Connections and tasks are "
        "ended now; end them in the test or its fixture (in a `finally`, so a failing test ends them too)",
        pytrace=False,
    )


def _wide(request: pytest.FixtureRequest) -> bool:
    """Whether the test uses a fixture of its module or wider, other than the harness's own."""
    definitions = request.node._fixtureinfo.name2fixturedefs
    return any(
        name not in _HARNESS and definition.scope != "function"
        for name, definitions_of_name in definitions.items()
        for definition in definitions_of_name
    )


@contextlib.asynccontextmanager
async def leaks_checked(where: str) -> AsyncIterator[None]:
    """What the block opens and leaves open fails `where`, and is ended: the check of a test, a module or
    a package (a test package whose modules share package-scoped fixtures checks once, at its end)."""
    before = _Before()
    yield
    leaked = await before.leaks()
    if leaked:
        _fail(where, leaked)


@pytest.fixture(scope="module", autouse=True)
async def leaks_per_module(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    async with leaks_checked(request.node.nodeid):
        yield


@pytest.fixture(autouse=True)
async def leaks_per_test(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    if _wide(request):
        yield
        return
    async with leaks_checked(request.node.nodeid):
        yield
