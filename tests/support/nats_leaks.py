"""After each test module, close the nats-py clients it left open and fail its teardown naming them.

A client left open after its nats-server stopped keeps reconnecting on the session's event loop
(services reconnect without limit). At the end of the session, pytest-asyncio cancels it, but
Python 3.11's `asyncio.wait_for` can lose that cancel (when the connect it was waiting on has just
failed) and nats-py's reconnect loop does not check whether the client is closed. The session then
hangs until pytest-timeout, and the error shows up in whichever test ran last.

So every module ends with a check: a client that still has tasks on the loop (reading, flushing,
pinging or reconnecting) and is not closed, and that was not already there when the module
started, is closed here and reported as an error of the module's last test. When nothing leaks,
the check only lists the loop's tasks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS

__all__ = ["nats_leaks"]

_SETTLE = 1.0
"""Seconds a client found open may take to finish a close already under way before it counts as leaked."""


def _clients() -> dict[int, tuple[NATS, list[asyncio.Task[object]]]]:
    """Every client with a task pending on the running loop, by id, with those tasks."""
    found: dict[int, tuple[NATS, list[asyncio.Task[object]]]] = {}
    for task in asyncio.all_tasks():
        frame = getattr(task.get_coro(), "cr_frame", None)
        owner = frame.f_locals.get("self") if frame is not None else None
        if isinstance(owner, NATS):
            found.setdefault(id(owner), (owner, []))[1].append(task)
    return found


def _describe(client: NATS) -> str:
    if client.is_reconnecting:
        status = "reconnecting"
    elif client.is_draining:
        status = "draining"
    elif client.is_connected:
        status = "connected"
    else:
        status = "connecting" if client.is_connecting else "not connected"
    servers = ", ".join(uri.netloc for uri in client.servers) or "no server"
    return f"{client.options.get('name') or 'unnamed client'} ({status} to {servers})"


async def _end(client: NATS, tasks: list[asyncio.Task[object]]) -> None:
    """Close `client`, then cancel what is left of its tasks (a reconnect loop that lost the cancel
    `close()` sends it), never waiting more than a few seconds."""
    closing = asyncio.ensure_future(client.close())
    await asyncio.wait({closing}, timeout=5)
    for _ in range(3):
        pending = [task for task in (closing, *tasks) if not task.done()]
        if not pending:
            break
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=1)
    if closing.done() and not closing.cancelled():
        closing.exception()  # retrieved: a failed close is not what this reports


def _new_clients(before: set[int]) -> list[tuple[NATS, list[asyncio.Task[object]]]]:
    return [entry for key, entry in _clients().items() if key not in before]


@pytest.fixture(scope="module", autouse=True)
async def nats_leaks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    before = set(_clients())
    yield
    if any(not client.is_closed for client, _ in _new_clients(before)):
        await asyncio.sleep(_SETTLE)  # a close under way (say, nats-py's own after a server error) finishes
    found = _new_clients(before)
    leaked = [_describe(client) for client, _ in found if not client.is_closed]
    for client, tasks in found:  # closed ones too: their reconnect loop may have lost its cancel
        await _end(client, tasks)
    if leaked:
        pytest.fail(
            f"{request.node.nodeid} left {len(leaked)} NATS client(s) open: {'; '.join(leaked)}. Closed now; "
            "close them in the test or fixture (a service's stop() must close its connections even when "
            "NATS is down: libs.common.bus.nats.drain_or_close)",
            pytrace=False,
        )
