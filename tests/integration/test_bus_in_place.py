"""Messages from a real nats-server to an `immediate` subscription (`libs.common.bus.in_place`): handled by
the connection's reader as they are parsed, in order, in the subscriber's context, with nats-py's
limits, errors and counts; every other subscription keeps nats-py's queue and task."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import inspect
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import SlowConsumerError

from libs.common.bus.bus_client import BusClient
from libs.common.bus.in_place import immediate
from libs.common.bus.nats import processed
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

WHOSE: contextvars.ContextVar[str] = contextvars.ContextVar("whose", default="nobody")


@pytest.fixture
async def pair(nats_url: str) -> AsyncIterator[tuple[BusClient, BusClient, list[Exception]]]:
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    receiver, publisher = BusClient(), BusClient()
    await receiver.connect(nats_url, error_cb=on_error)
    await publisher.connect(nats_url)
    yield receiver, publisher, errors
    await publisher.close()
    await receiver.close()


async def test_an_immediate_subscriptions_messages_are_handled_by_the_reader_in_order_and_context(pair):
    receiver, publisher, errors = pair
    seen: list[tuple[bytes, asyncio.Task[object] | None, str, str | None]] = []

    def handle(msg: Msg) -> None:
        seen.append((msg.data, asyncio.current_task(), WHOSE.get(), (msg.headers or {}).get("Carried")))

    WHOSE.set("subscriber")
    sub = await receiver.subscribe("work.call", queue="workers", cb=immediate(handle))
    await processed(receiver)
    WHOSE.set("someone else")
    in_before = receiver.stats["in_msgs"]
    for n in range(50):
        await publisher.publish("work.call", str(n).encode(), headers={"Carried": f"h{n}"})
    await poll_until(lambda: len(seen) == 50, "every message handled")

    assert [data for data, *_ in seen] == [str(n).encode() for n in range(50)]
    assert {task for _, task, *_ in seen} == {receiver._reading_task}  # not the subscription's own task
    assert sub._wait_for_msgs_task not in {task for _, task, *_ in seen}
    assert {whose for _, _, whose, _ in seen} == {"subscriber"}
    assert [header for *_, header in seen] == [f"h{n}" for n in range(50)]
    assert sub._received == 50 and receiver.stats["in_msgs"] - in_before == 50 and sub.pending_msgs == 0
    assert errors == []


async def test_a_failing_handler_reports_to_the_connection_and_the_next_message_is_still_handled(pair):
    receiver, publisher, errors = pair
    handled: list[bytes] = []

    def handle(msg: Msg) -> None:
        if msg.data == b"fail":
            raise ValueError("the handler failed")
        if msg.data == b"cancelled":  # e.g. the result of a future cancelled meanwhile, read
            raise asyncio.CancelledError
        handled.append(msg.data)

    await receiver.subscribe("work.call", cb=immediate(handle))
    await processed(receiver)
    for data in (b"fail", b"cancelled", b"next"):
        await publisher.publish("work.call", data)
    await poll_until(lambda: len(errors) == 2 and handled, "the failures reported and the next one handled")

    assert [type(e) for e in errors] == [ValueError, asyncio.CancelledError] and handled == [b"next"]
    assert receiver.is_connected and not receiver._reading_task.done()  # the reader reads on


async def test_a_message_over_the_pending_limit_is_a_slow_consumers_as_nats_py_has_it(pair):
    receiver, publisher, errors = pair
    handled: list[bytes] = []
    await receiver.subscribe("work.call", cb=immediate(lambda m: handled.append(m.data)), pending_bytes_limit=16)
    await processed(receiver)
    await publisher.publish("work.call", b"x" * 32)
    await publisher.publish("work.call", b"small")
    await poll_until(lambda: errors and handled, "the slow consumer reported and the small one handled")

    assert handled == [b"small"] and [type(e) for e in errors] == [SlowConsumerError]


async def test_a_subscription_for_n_messages_and_a_plain_callback_keep_nats_pys_task(pair):
    receiver, publisher, _ = pair
    counted: list[asyncio.Task[object] | None] = []
    plain: list[asyncio.Task[object] | None] = []

    async def on_plain(msg: Msg) -> None:
        plain.append(asyncio.current_task())

    limited = await receiver.subscribe(
        "work.limited", cb=immediate(lambda m: counted.append(asyncio.current_task())), max_msgs=2
    )
    other = await receiver.subscribe("work.plain", cb=on_plain)
    await processed(receiver)
    for _ in range(3):
        await publisher.publish("work.limited", b"m")
        await publisher.publish("work.plain", b"m")
    await poll_until(lambda: len(counted) == 2 and len(plain) == 3, "both handled in their tasks")
    await processed(publisher)
    await processed(receiver)

    assert counted == [limited._wait_for_msgs_task] * 2  # the third after its end: not delivered at all
    assert plain == [other._wait_for_msgs_task] * 3
    assert receiver.in_place(limited) is None and receiver.in_place(other) is None


async def test_an_unsubscribed_immediate_subscription_is_forgotten_and_handed_nothing_more(pair):
    receiver, publisher, _ = pair
    handled: list[bytes] = []
    sub = await receiver.subscribe("work.call", cb=immediate(lambda m: handled.append(m.data)))
    await processed(receiver)
    assert receiver.in_place(sub) is not None
    await publisher.publish("work.call", b"before")
    await poll_until(lambda: handled, "the first handled")
    await sub.unsubscribe()
    await processed(receiver)
    await publisher.publish("work.call", b"after")
    await processed(publisher)
    await processed(receiver)

    assert handled == [b"before"] and receiver.in_place(sub) is None


NATS_PY_PROCESS_MSG = "6cff75947e97717a14ec0ed53f1679b8179e81d18a2fafff780baa08160ecc0a"
"""sha256 of nats-py 2.16.0's `Client._process_msg` source, whose steps up to the queue `BusClient` repeats."""


def test_nats_py_process_msg_is_the_one_repeated() -> None:
    # a nats-py that does more for a plain subscription's message before queueing it (a count, a
    # check) must be read again, and `BusClient._process_msg` brought in line, before this is renewed
    source = inspect.getsource(NATS._process_msg)
    assert hashlib.sha256(source.encode()).hexdigest() == NATS_PY_PROCESS_MSG


async def test_a_jetstream_push_subscription_keeps_nats_pys_task_even_with_an_immediate_callback(pair):
    receiver, publisher, _ = pair
    js = receiver.jetstream()
    stream = f"INPLACE{id(receiver)}"
    await js.add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
    try:
        tasks: list[asyncio.Task[object] | None] = []
        sub = await js.subscribe(f"{stream.lower()}.x", cb=immediate(lambda m: tasks.append(asyncio.current_task())))
        await publisher.jetstream().publish(f"{stream.lower()}.x", b"stored")
        await poll_until(lambda: tasks, "the stored message delivered")
    finally:
        await js.delete_stream(stream)

    # nats-py wraps a JetStream callback in its own (acks, flow control, heartbeats), which is not
    # `immediate`: a push subscription never runs in place, whatever its callback
    assert tasks == [sub._wait_for_msgs_task] and receiver.in_place(sub) is None
