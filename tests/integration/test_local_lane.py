"""The in-process lane (`libs.common.bus.local_lane`) against a real nats-server: what it may hand over
in memory arrives exactly as the server would have delivered it, and everything else still goes
through the server, so NATS's meaning (queue groups, broadcasts, limits) is unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Callable

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import MaxPayloadError, SlowConsumerError

from libs.common.bus import local_lane
from libs.common.bus.in_place import immediate
from libs.common.bus.local_lane import LocalLane
from libs.common.bus.nats import processed
from libs.common.contracts.carried import Carried, carried, carrying
from libs.common.contracts.messages import Caller, ToolCall
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration


@pytest.fixture
async def connect(nats_url: str) -> AsyncIterator[Callable[[LocalLane | None], asyncio.Future[NATS]]]:
    opened: list[NATS] = []

    async def open_one(lane: LocalLane | None) -> NATS:
        nc = local_lane.new_client(lane) if lane is not None else NATS()
        await nc.connect(nats_url)
        opened.append(nc)
        return nc

    yield open_one  # type: ignore[misc]
    for nc in opened:
        if not nc.is_closed:
            await nc.close()


async def _ignore(msg: Msg) -> None:
    pass


def _collector() -> tuple[list[Msg], asyncio.Event, Callable[[Msg], asyncio.Future[None]]]:
    got: list[Msg] = []
    arrived = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        got.append(msg)
        arrived.set()

    return got, arrived, on_msg  # type: ignore[return-value]


async def test_a_request_and_its_reply_between_two_connections_on_the_lane_skip_the_server(connect):
    lane = LocalLane()
    responder, requester = await connect(lane), await connect(lane)
    replies, replied, on_reply = _collector()

    async def answer(msg: Msg) -> None:
        await msg.respond(b"answer to " + msg.data)  # through the lane too: the inbox is in this process

    await responder.subscribe("work.call", queue="workers", cb=answer)
    inbox = requester.new_inbox()
    await requester.subscribe(f"{inbox}.*", cb=on_reply)
    sent_before, received_before = requester.stats["out_msgs"], requester.stats["in_msgs"]

    await requester.publish("work.call", b"job 1", reply=f"{inbox}.7", headers={"Bastion-Grant": "g", "X": "1"})
    await asyncio.wait_for(replied.wait(), 5)

    [reply] = replies
    assert (reply.subject, reply.data) == (f"{inbox}.7", b"answer to job 1")
    assert requester.stats["out_msgs"] == sent_before and requester.stats["in_msgs"] == received_before
    assert responder.stats["out_msgs"] == 0 and responder.stats["in_msgs"] == 0


async def test_the_handed_over_message_is_what_the_server_would_deliver(connect):
    lane = LocalLane()
    receiver = await connect(lane)
    got, arrived, on_msg = _collector()
    await receiver.subscribe("work.call", queue="workers", cb=on_msg)
    headers = {"Bastion-Grant": '{"mac": "x"}', "Accept-By": "123.5"}

    await (await connect(lane)).publish("work.call", b"\x00payload\xff", reply="_INBOX.a.b.3", headers=headers)
    await (await connect(None)).publish("work.call", b"\x00payload\xff", reply="_INBOX.a.b.3", headers=headers)
    while len(got) < 2:
        arrived.clear()
        await asyncio.wait_for(arrived.wait(), 5)

    local, remote = got
    for msg in (local, remote):
        assert (msg.subject, msg.reply, msg.data, msg.headers) == (
            "work.call",
            "_INBOX.a.b.3",
            b"\x00payload\xff",
            headers,
        )
        assert msg._client is receiver  # msg.respond() answers on the receiver's own connection
    assert vars(local) == vars(remote)  # every field nats-py's own `Msg` has, built without its `__init__`
    headers["Accept-By"] = "changed after sending"
    assert local.headers == {"Bastion-Grant": '{"mac": "x"}', "Accept-By": "123.5"}


async def test_a_broadcast_still_reaches_every_subscriber_once_through_the_server(connect):
    lane = LocalLane()
    here, there = await connect(lane), await connect(None)
    got_here, _, on_here = _collector()
    got_there, _, on_there = _collector()
    await here.subscribe("bastion.exec.cancel", cb=on_here)
    await there.subscribe("bastion.exec.cancel", cb=on_there)
    await processed(there)
    publisher = await connect(lane)

    await publisher.publish("bastion.exec.cancel", b"stop 1")
    await processed(publisher)
    await processed(here)
    await processed(there)

    assert [m.data for m in got_here] == [b"stop 1"] and [m.data for m in got_there] == [b"stop 1"]
    assert publisher.stats["out_msgs"] >= 1


async def test_once_the_local_member_leaves_its_group_the_others_get_the_work(connect):
    lane = LocalLane()
    local = await connect(lane)
    elsewhere = await connect(None)
    got_local, handled, on_local = _collector()
    got_elsewhere, arrived, on_elsewhere = _collector()
    sub = await local.subscribe("work.call", queue="workers", cb=on_local)
    await elsewhere.subscribe("work.call", queue="workers", cb=on_elsewhere)
    await processed(elsewhere)
    publisher = await connect(lane)

    await publisher.publish("work.call", b"while here")
    await asyncio.wait_for(handled.wait(), 5)
    await sub.unsubscribe()
    await processed(local)
    await publisher.publish("work.call", b"after leaving")
    await asyncio.wait_for(arrived.wait(), 5)

    assert [m.data for m in got_local] == [b"while here"]
    assert [m.data for m in got_elsewhere] == [b"after leaving"]
    assert lane.members() == 0  # the departed member was dropped from the table


async def test_a_closed_connection_is_never_handed_work(connect):
    lane = LocalLane()
    closing, elsewhere = await connect(lane), await connect(None)
    got, arrived, on_msg = _collector()
    await closing.subscribe("work.call", queue="workers", cb=_ignore)
    await elsewhere.subscribe("work.call", queue="workers", cb=on_msg)
    await processed(elsewhere)
    await closing.close()

    await (await connect(lane)).publish("work.call", b"after close")
    await asyncio.wait_for(arrived.wait(), 5)
    assert [m.data for m in got] == [b"after close"]


async def test_the_servers_payload_limit_holds_on_the_lane(connect):
    lane = LocalLane()
    receiver, publisher = await connect(lane), await connect(lane)
    await receiver.subscribe("work.call", queue="workers", cb=_ignore)
    with pytest.raises(MaxPayloadError):
        await publisher.publish("work.call", b"x" * (publisher.max_payload + 1))


async def test_members_of_one_group_in_this_process_take_turns(connect):
    lane = LocalLane()
    first, second, publisher = await connect(lane), await connect(lane), await connect(lane)
    got_first, _, on_first = _collector()
    got_second, _, on_second = _collector()
    await first.subscribe("work.call", queue="workers", cb=on_first)
    await second.subscribe("work.call", queue="workers", cb=on_second)

    for n in range(10):
        await publisher.publish("work.call", str(n).encode())
    await poll_until(lambda: len(got_first) + len(got_second) == 10, "ten calls handled")

    assert len(got_first) == len(got_second) == 5


async def test_a_plain_subscription_or_one_without_a_callback_is_not_on_the_lane(connect):
    lane = LocalLane()
    nc = await connect(lane)
    await nc.subscribe("work.call")  # no callback: read with next_msg, through the server
    await nc.subscribe("events.>", queue="workers", cb=_ignore)  # a wildcard group
    await nc.subscribe("bastion.exec.cancel", cb=_ignore)  # a broadcast
    await nc.subscribe(f"{nc.new_inbox()}.*", cb=_ignore)  # a reply inbox: on the lane
    assert lane.members() == 1


async def test_a_model_written_for_the_lane_reaches_its_receiver_parsed_and_the_server_path_parses(connect):
    lane = LocalLane()
    with local_lane.sharing(lane), local_lane.carrying_models():
        receiver = await connect(lane)
        got, arrived, on_msg = _collector()
        await receiver.subscribe("work.call", queue="workers", cb=on_msg)
        caller = Caller(key_id="k1", key_name="bench")
        call = ToolCall(caller=caller, server="echo", tool="echo", name="echo__echo", arguments={"t": 1}, timeout=9)
        data = carrying(call)
        await (await connect(lane)).publish("work.call", data, reply="_INBOX.a.b.3")
        await (await connect(None)).publish("work.call", data, reply="_INBOX.a.b.4")
        call.server = "changed after sending"
        while len(got) < 2:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 5)

    local, remote = sorted(got, key=lambda msg: msg.reply)
    assert local.data == remote.data == call.model_copy(update={"server": "echo"}).model_dump_json().encode()
    assert type(local.data) is Carried and type(remote.data) is bytes  # the socket carries bytes alone
    handed, parsed = carried(ToolCall, local.data), carried(ToolCall, remote.data)
    assert handed == parsed and handed.__pydantic_fields_set__ == parsed.__pydantic_fields_set__
    assert handed.server == "echo" and handed is not call


async def test_an_immediate_subscriber_takes_local_messages_in_their_publishers_call_in_order(connect):
    lane = LocalLane()
    receiver, publisher = await connect(lane), await connect(lane)
    got: list[bytes] = []
    sub = await receiver.subscribe("work.call", queue="workers", cb=immediate(lambda m: got.append(m.data)))

    for n in range(20):
        await publisher.publish("work.call", str(n).encode(), headers={"N": str(n)})

    # no turn of the event loop yet: each was taken in its publish, none waits on the pending queue
    assert got == [str(n).encode() for n in range(20)]
    assert (sub.pending_msgs, sub.delivered) == (0, 20)
    assert publisher.stats["out_msgs"] == 0


async def test_a_message_sent_from_inside_an_immediate_handler_waits_its_turn_behind_it(connect):
    lane = LocalLane()
    receiver, publisher = await connect(lane), await connect(lane)
    finished: list[bytes] = []

    def handle(msg: Msg) -> None:
        if msg.data == b"1":  # a publish to its own subscription, run to its end inside the handler
            sending = publisher.publish("work.call", b"2")
            with contextlib.suppress(StopIteration):
                sending.send(None)
        finished.append(msg.data)

    await receiver.subscribe("work.call", queue="workers", cb=immediate(handle))
    await publisher.publish("work.call", b"1")
    await publisher.publish("work.call", b"3")  # queued behind "2", never ahead of it
    await poll_until(lambda: len(finished) == 3, "three messages handled")

    assert finished == [b"1", b"2", b"3"]


async def test_a_message_over_an_immediate_subscribers_pending_limit_is_still_a_slow_consumers(nats_url):
    lane = LocalLane()
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    receiver, publisher = local_lane.new_client(lane), local_lane.new_client(lane)
    await receiver.connect(nats_url, error_cb=on_error)
    await publisher.connect(nats_url)
    try:
        got: list[bytes] = []
        on_msg = immediate(lambda m: got.append(m.data))
        await receiver.subscribe("work.call", queue="workers", cb=on_msg, pending_bytes_limit=16)
        await processed(receiver)  # the server knows the subscription before the big one goes its way
        await publisher.publish("work.call", b"x" * 32)  # more than the subscriber takes pending
        await publisher.publish("work.call", b"small")
        await poll_until(lambda: errors and got, "the slow consumer reported and the small one handled")
    finally:
        await publisher.close()
        await receiver.close()

    assert got == [b"small"]
    assert [type(e) for e in errors] == [SlowConsumerError] and publisher.stats["out_msgs"] == 1


async def test_an_immediate_handler_runs_in_its_subscribers_context_and_its_failure_stays_there(nats_url):
    lane = LocalLane()
    errors: list[Exception] = []
    whose: contextvars.ContextVar[str] = contextvars.ContextVar("whose", default="nobody")

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    def handle(msg: Msg) -> None:
        seen.append(whose.get())
        if msg.data == b"fail":
            raise ValueError("the handler failed")

    seen: list[str] = []
    receiver, publisher = local_lane.new_client(lane), local_lane.new_client(lane)
    await receiver.connect(nats_url, error_cb=on_error)
    await publisher.connect(nats_url)
    try:
        whose.set("subscriber")
        await receiver.subscribe("work.call", queue="workers", cb=immediate(handle))
        whose.set("publisher")
        await publisher.publish("work.call", b"fail")  # raises nothing here: the failure is the subscriber's
        await publisher.publish("work.call", b"next")
        await poll_until(lambda: errors, "the failure reported to the subscriber's connection")
    finally:
        await publisher.close()
        await receiver.close()

    assert seen == ["subscriber", "subscriber"]
    assert [str(e) for e in errors] == ["the handler failed"]
