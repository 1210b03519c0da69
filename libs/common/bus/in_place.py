"""Subscriptions whose handler runs where their message arrives, without the subscription task's turn.

nats-py hands every message to a subscription's pending queue, and a task per subscription takes it
from there and awaits the callback: per message a queue put and get and one more task to wake, about
220 bytecodes and a loop turn, before the handler even starts. A handler that only spawns or resolves
and never waits (`immediate`: the executor's entry, a relay's reply inbox) gains nothing from that
task. Such a handler is run in place instead, by whoever delivers the message: the connection's
reader as it parses it (`bus_client.BusClient`), or a publisher in the same process
(`local_lane`). It runs in the context the subscription was made in, as its task would have.

Only when nothing is queued ahead of it and the handler is not already running (a handler publishing to
its own subscription on a lane), so each subscriber still takes its messages in order; anything else
is queued as nats-py queues it. Pending limits stay as they were: nothing waits, so nothing piles up.
An exception goes to the connection's error callback, as nats-py reports a callback's.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

__all__ = ["InPlace", "handler_of", "immediate", "overflows"]

_HANDLER = "in_place_handler"
"""Where `immediate` keeps a callback's handler (the function's own attributes)."""

_reporting: set[asyncio.Task[None]] = set()
"""Error callbacks under way for handlers run in place (held until they finish)."""


def immediate(handler: Callable[[Msg], None]) -> Callable[[Msg], Awaitable[None]]:
    """A subscription callback for a `handler` that only spawns or resolves, never waits.

    nats-py's subscription task awaits it as any other callback when a message is queued; a message
    that may be delivered in place runs `handler` directly (the module's docstring says when)."""

    async def callback(msg: Msg) -> None:
        handler(msg)

    callback.__dict__[_HANDLER] = handler
    return callback


def handler_of(callback: object) -> Callable[[Msg], None] | None:
    """The handler `immediate` wrapped in `callback`, or None for any other callback."""
    return getattr(callback, _HANDLER, None)


def overflows(sub: Subscription, size: int) -> bool:
    """Whether a message of `size` bytes puts `sub` over its pending-bytes limit.

    nats-py's slow-consumer rule (a limit of 0 is none), by which it drops and reports the message:
    neither deliverer takes such a message out of nats-py's hands (`BusClient._process_msg`, `local_lane`)."""
    return 0 < sub._pending_bytes_limit <= sub._pending_size + size


class InPlace:
    """A subscription's `immediate` handler, with the context it runs in and whether it is running."""

    __slots__ = ("busy", "context", "handler")

    def __init__(self, handler: Callable[[Msg], None]) -> None:
        self.handler = handler
        self.context = contextvars.copy_context()  # the subscriber's, as its nats-py task would have
        self.busy = False

    def takes(self, sub: Subscription) -> bool:
        """Whether a message for `sub` may run now: the handler is free and nothing is queued ahead of it."""
        return not self.busy and sub._pending_queue.empty()

    def deliver(self, sub: Subscription, msg: Msg) -> None:
        """Run the handler on `msg` now (`takes` said it may), counted as `sub`'s as nats-py counts one."""
        sub._received += 1
        error_cb: Callable[[Any], Awaitable[Any]] = sub._conn._error_cb
        self.busy = True
        try:
            self.context.run(self.handler, msg)
        # the subscriber's failure, never the deliverer's (a reader that stopped would silence the
        # connection), reported as nats-py reports a callback's; a sync handler has no await to be
        # cancelled at, so a CancelledError out of it is a failure like any other
        except (Exception, asyncio.CancelledError) as exc:
            task = asyncio.ensure_future(error_cb(exc))
            _reporting.add(task)
            task.add_done_callback(_reporting.discard)
        finally:
            self.busy = False
