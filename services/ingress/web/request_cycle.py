"""uvicorn's request cycle, without an `asyncio.Event` per request.

uvicorn gives every request an `asyncio.Event` that the parser sets as the body arrives and the
app's `receive()` waits on and clears: five Python calls per request (the Event's `__init__`, three
`set`s, `wait`, `clear`) even when, as for almost every `/mcp` POST, the whole body came with the
head and nothing ever waits. `Wake` keeps the same flag and builds an Event only for a `receive()`
that must wait; ingress's protocol (`http_limits`) and `response_writes.send_whole` raise the flag
directly on the hot path. Every other use (uvicorn's `send`, `connection_lost`) calls `set()` as
before, so a waiting `receive()` wakes exactly when it did.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

__all__ = ["RequestCycle", "Wake", "ended"]


class Wake:
    """`asyncio.Event`'s set/clear/wait, with the Event itself made only when a waiter must wait."""

    # class attributes as defaults: made without an `__init__` call (one fewer Python call per request)
    pending: bool = False
    """Set and not cleared since: what `Event.is_set()` says."""
    event: asyncio.Event | None = None
    """The Event that waiters wait on, while any does."""

    def set(self) -> None:
        self.pending = True
        event = self.event
        if event is not None:
            self.event = None
            event.set()

    def clear(self) -> None:
        self.pending = False

    def is_set(self) -> bool:
        return self.pending

    async def wait(self) -> bool:
        if not self.pending:
            event = self.event
            if event is None:
                event = self.event = asyncio.Event()
            await event.wait()
        return True


class RequestCycle(RequestResponseCycle):
    """uvicorn's cycle, its `message_event` a `Wake` (made by ingress's protocol)."""

    message_event: Wake  # type: ignore[assignment]

    async def receive(self) -> Any:
        """uvicorn's `receive`, answering at once when the body is already in (no Event, no flow-control call)."""
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        if not self.disconnected and not self.response_complete:
            flow = self.flow
            if flow.read_paused:
                flow.resume_reading()
            wake = self.message_event
            if not wake.pending:
                await wake.wait()
            wake.pending = False
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        message = {"type": "http.request", "body": bytes(self.body), "more_body": self.more_body}
        self.body = bytearray()
        return message


def _nothing() -> None:
    """What a request whose app has returned calls once answered: nothing (uvicorn's `run_asgi` sets the same)."""


def ended(cycle: RequestCycle, tasks: set[asyncio.Task[None]], task: asyncio.Task[None]) -> None:
    """uvicorn's `run_asgi` checks, done when the task that ran the app itself ends (one coroutine fewer per request).

    As there: an exception (a cancellation too) is logged and answered 500, or closes the
    connection if the answer had begun; an app that returned a value, or no answer, or half of one,
    is logged and answered 500 or cut off. A 500 is sent from a task of its own, which the server
    waits for like the request's."""
    tasks.discard(task)
    cycle.on_response = _nothing
    try:
        error = task.exception()
    except asyncio.CancelledError as cancelled:
        error = cancelled
    if error is not None:
        cycle.logger.error("Exception in ASGI application\n", exc_info=error)
        if cycle.response_started:
            cycle.transport.close()
            return
    elif (result := task.result()) is not None:
        cycle.logger.error("ASGI callable should return None, but returned '%s'.", result)
        cycle.transport.close()
        return
    elif cycle.disconnected or cycle.response_complete:
        return
    elif cycle.response_started:
        cycle.logger.error("ASGI callable returned without completing response.")
        cycle.transport.close()
        return
    else:
        cycle.logger.error("ASGI callable returned without starting response.")
    answer = asyncio.get_running_loop().create_task(cycle.send_500_response())
    tasks.add(answer)
    answer.add_done_callback(tasks.discard)
