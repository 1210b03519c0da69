"""`libs.common.bus.relay` against a real NATS server: replicas are plain connections that answer,
acknowledge, go deaf or close, and a spy on the reply inboxes sees every acknowledgement.

No timing thresholds: each outcome is told apart by its kind (a reply, `ResponderLost`, a NATS
timeout, "no responders"), never by how long it took.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager as AsyncContextManager

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from libs.common.bus.acknowledger import Acknowledger, reply_subject
from libs.common.bus.nats import connect
from libs.common.bus.relay import AckedRequester, ResponderLost
from libs.common.contracts import subjects
from libs.common.contracts.messages import BusMoved
from libs.common.contracts.subjects import Holders
from libs.common.settings import RequestPathSettings
from tests.support.barrier import processed
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

SUBJECT = "relaytest.call"
QUEUE = "relaytest"
HOLDER = "Relaytest-Replica"
QUICK = RequestPathSettings(ack_after=0.05, ack_grace=1.0, probe_every=0.1, probe_timeout=0.2, probe_misses=2)
"""Short intervals only make the failing cases quick; no assertion depends on them."""
NEVER = 30.0  # `within` of calls expected to end otherwise: reaching it fails the test


def alive_subject(instance: str) -> str:
    return f"relaytest.alive.{instance}"


REPLICAS = Holders("test", HOLDER, alive_subject)


Handler = Callable[[NATS, Msg], Awaitable[None]]


@contextlib.asynccontextmanager
async def responder(
    nats_url: str,
    instance: str,
    run: Callable[[NATS, Acknowledger, Msg], Awaitable[None]],
    *,
    subject: str = SUBJECT,
    holders: Holders = REPLICAS,
    after: float = 0.05,
) -> AsyncIterator[NATS]:
    """One responder replica: its own connection, acknowledging (to the requester a forwarding
    replica named, else to the reply subject) as the services do; `run` answers each request."""
    nc = await connect(nats_url, f"{holders.accepted_by}-{instance}")
    acks = Acknowledger(nc, holders, instance=instance, after=after)
    await acks.start()
    tasks: set[asyncio.Task[None]] = set()

    async def on_request(msg: Msg) -> None:
        task = asyncio.create_task(run(nc, acks, msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        acks.watch(msg, task, reply_subject(msg))

    await nc.subscribe(subject, queue=QUEUE, cb=on_request)
    await processed(nc)
    try:
        yield nc
    finally:
        for task in tasks:
            task.cancel()
        if not nc.is_closed:
            await nc.close()


def replica(nats_url: str, instance: str, handler: Handler, after: float = 0.05) -> AsyncContextManager[NATS]:
    """A replica of the one kind: `handler` answers each request on its reply subject."""
    return responder(nats_url, instance, lambda nc, _, msg: handler(nc, msg), after=after)


@pytest.fixture
async def requester(nats_url) -> AsyncIterator[AckedRequester]:
    nc = await connect(nats_url, "requester")
    relay = AckedRequester(nc, REPLICAS, settings=QUICK)
    await relay.start()
    yield relay
    await nc.close()


class Spy:
    """Every acknowledgement sent to any inbox: the holder's name, in order."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.seen: list[str] = []
        self.workers: list[str] = []
        """Acknowledgements of the second kind of holder (`WORKER`)."""
        self._marks: dict[str, asyncio.Event] = {}

    async def on_msg(self, msg: Msg) -> None:
        if msg.subject in self._marks:
            self._marks.pop(msg.subject).set()
        elif msg.headers and HOLDER in msg.headers:
            self.seen.append(msg.headers[HOLDER])
        elif msg.headers and WORKER in msg.headers:
            self.workers.append(msg.headers[WORKER])

    async def settle(self, sender: NATS) -> None:
        """Return once the spy has seen everything `sender` published so far: NATS delivers to the
        spy in the order it processed messages, so a mark sent afterwards arrives after them."""
        await processed(sender)
        mark = self.nc.new_inbox()
        self._marks[mark] = seen = asyncio.Event()
        await self.nc.publish(mark, b"")
        await asyncio.wait_for(seen.wait(), NEVER)


@pytest.fixture
async def spy(nats_url) -> AsyncIterator[Spy]:
    nc = await connect(nats_url, "spy")
    spy = Spy(nc)
    await nc.subscribe("_INBOX.>", cb=spy.on_msg)
    await processed(nc)
    yield spy
    await nc.close()


async def echo(nc: NATS, msg: Msg) -> None:
    await nc.publish(msg.reply, b"re: " + msg.data)


async def never_answer(nc: NATS, msg: Msg) -> None:
    await asyncio.Event().wait()


async def test_fast_answers_cost_no_acknowledgement(nats_url, requester, spy):
    # acknowledging only after 5 s: these answers certainly come first
    async with replica(nats_url, "a", echo, after=5.0) as nc:
        replies = await asyncio.gather(*(requester.request(SUBJECT, b"%d" % i, within=NEVER) for i in range(20)))
        assert [r.data for r in replies] == [b"re: %d" % i for i in range(20)]
        await spy.settle(nc)
    assert spy.seen == []


async def test_a_slow_call_is_acknowledged_then_answered(nats_url, requester, spy):
    go = asyncio.Event()

    async def slow(nc: NATS, msg: Msg) -> None:
        await go.wait()
        await echo(nc, msg)

    async with replica(nats_url, "a", slow):
        call = asyncio.create_task(requester.request(SUBJECT, b"x", within=NEVER))
        await poll_until(lambda: spy.seen, "the spy to see an acknowledgement", within=NEVER)
        go.set()
        assert (await call).data == b"re: x"
    assert spy.seen == ["a"]


async def test_a_plain_request_is_never_acknowledged(nats_url, spy):
    go = asyncio.Event()
    slow_calls: list[Msg] = []

    async def slow(nc: NATS, msg: Msg) -> None:
        slow_calls.append(msg)
        await go.wait()
        await echo(nc, msg)

    async with replica(nats_url, "a", slow) as nc:
        call = asyncio.create_task(nc.request(SUBJECT, b"plain", timeout=NEVER))
        await poll_until(lambda: slow_calls, "the replica to receive the call", within=NEVER)
        await asyncio.sleep(0.3)  # past `after` on this same event loop: an ack would have been published
        await spy.settle(nc)
        assert spy.seen == []
        go.set()
        assert (await call).data == b"re: plain"


async def test_a_replica_that_dies_holding_calls_fails_them(nats_url, requester, spy):
    async with replica(nats_url, "doomed", never_answer) as nc:
        calls = [asyncio.create_task(requester.request(SUBJECT, b"x", within=NEVER)) for _ in range(5)]
        await poll_until(lambda: len(spy.seen) == 5, "five acknowledgements", within=NEVER)
        await nc.close()  # its subscriptions go with it: probes get "no responders"
        for call in calls:
            with pytest.raises(ResponderLost, match="test replica 'doomed' stopped before answering"):
                await call


async def test_a_replica_that_stops_answering_probes_counts_as_gone(nats_url, requester):
    """Alive to NATS but deaf (stopped, wedged): unanswered probes are what tells."""
    nc = await connect(nats_url, "deaf")
    try:

        async def hold(msg: Msg) -> None:
            await nc.publish(msg.reply, b"", headers={HOLDER: "deaf"})

        async def ignore(msg: Msg) -> None:
            return None

        await nc.subscribe(SUBJECT, queue=QUEUE, cb=hold)
        await nc.subscribe(alive_subject("deaf"), cb=ignore)
        await processed(nc)
        with pytest.raises(ResponderLost, match="'deaf' stopped before answering"):
            await requester.request(SUBJECT, b"x", within=NEVER)
    finally:
        await nc.close()


async def test_a_call_no_replica_acknowledges_is_lost(nats_url, requester):
    """Taken by a subscriber that neither answers nor acknowledges: a replica dying as it arrived."""
    nc = await connect(nats_url, "black-hole")
    try:

        async def swallow(msg: Msg) -> None:
            return None

        await nc.subscribe(SUBJECT, queue=QUEUE, cb=swallow)
        await processed(nc)
        # on a loaded machine the NATS member may also miss its PING meanwhile: lost all the same
        lost = "no test replica acknowledged the call|so the call may not have reached any test replica"
        with pytest.raises(ResponderLost, match=lost):
            await requester.request(SUBJECT, b"x", within=NEVER)
    finally:
        await nc.close()


PATIENT = RequestPathSettings(ack_after=0.05, ack_grace=2 * NEVER)
"""A grace longer than any call's wait: only a replica's word that it lost its member fails a call early."""


async def _swallowed_then_moved(nats_url: str, moved: BusMoved, within: float) -> None:
    """A call taken by a subscriber that neither answers nor acknowledges (it went down with its
    member), after which a replica says on `BUS_MOVED` that it is back from a lost member."""
    nc = await connect(nats_url, "requester")
    black_hole = await connect(nats_url, "black-hole")
    try:
        relay = AckedRequester(nc, REPLICAS, settings=PATIENT)
        await relay.start()
        took = asyncio.Event()

        async def swallow(msg: Msg) -> None:
            took.set()

        await black_hole.subscribe(SUBJECT, queue=QUEUE, cb=swallow)
        await processed(black_hole)
        call = asyncio.create_task(relay.request(SUBJECT, b"x", within=within))
        await asyncio.wait_for(took.wait(), NEVER)
        await poll_until(lambda: call.done() or relay._lost_after < _age(relay), "the call to be older than a fast ack")
        await black_hole.publish(subjects.BUS_MOVED, moved.model_dump_json().encode())
        await call
    finally:
        await nc.close()
        await black_hole.close()


def _age(relay: AckedRequester) -> float:
    return max((time.monotonic() - p.sent_at for p in relay._pending.values()), default=0.0)


async def test_a_call_lost_with_a_replicas_member_fails_when_the_replica_says_it_moved(nats_url):
    with pytest.raises(ResponderLost, match=r"a test replica lost its NATS member 10\.9\.9\.9:4222"):
        await _swallowed_then_moved(nats_url, BusMoved(role="test", left="10.9.9.9:4222"), within=NEVER)


async def test_a_move_of_a_role_the_call_never_reached_leaves_it_waiting(nats_url):
    with pytest.raises(NatsTimeout):  # its own deadline, not the other role's move
        await _swallowed_then_moved(nats_url, BusMoved(role="elsewhere", left="10.9.9.9:4222"), within=2.0)


async def test_a_live_replica_that_never_answers_times_out(nats_url, requester, spy):
    async with replica(nats_url, "a", never_answer):
        with pytest.raises(NatsTimeout):
            await requester.request(SUBJECT, b"x", within=1.0)
    assert spy.seen == ["a"]  # held all along, and alive: a timeout, not a loss


async def test_no_replica_at_all_is_no_responders(requester):
    with pytest.raises(NoRespondersError):
        await requester.request(SUBJECT, b"x", within=NEVER)


WORKER_SUBJECT = "relaytest.work"
WORKER = "Relaytest-Worker"


def worker_alive(instance: str) -> str:
    return f"relaytest.worker-alive.{instance}"


WORKERS = Holders("worker", WORKER, worker_alive)


def worker(nats_url: str, instance: str, handler: Handler) -> AsyncContextManager[NATS]:
    """A second kind of holder (as an executor is after policy): it takes what a decider passes on
    and answers the original requester (`subjects.REPLY_TO`), acknowledging it there."""

    async def run(nc: NATS, _: Acknowledger, msg: Msg) -> None:
        reply = reply_subject(msg)
        assert reply is not None and reply != msg.reply  # the requester's, not the decider's
        await handler(nc, Msg(nc, subject=msg.subject, reply=reply, data=msg.data, headers=msg.headers))

    return responder(nats_url, instance, run, subject=WORKER_SUBJECT, holders=WORKERS)


def decider(nats_url: str, instance: str) -> AsyncContextManager[NATS]:
    """A replica that holds each request until it has acknowledged it (a slow decision), then hands
    it over to the workers, as policy forwards a call it held past `ack_after`."""

    async def decide(nc: NATS, acks: Acknowledger, msg: Msg) -> None:
        assert msg.reply is not None
        await poll_until(lambda: acks.acknowledged(msg.reply or ""), "the decider to acknowledge")
        assert await acks.hand_over(msg.reply)
        headers = {subjects.REPLY_TO: msg.reply, subjects.WANT_ACK: "1"}
        await nc.publish(WORKER_SUBJECT, msg.data, reply=nc.new_inbox(), headers=headers)

    return responder(nats_url, instance, decide)


@pytest.fixture
async def two_stage(nats_url) -> AsyncIterator[AckedRequester]:
    nc = await connect(nats_url, "requester")
    relay = AckedRequester(nc, REPLICAS, settings=QUICK, also=(WORKERS,))
    await relay.start()
    yield relay
    await nc.close()


async def test_a_request_handed_over_is_answered_by_the_next_holder(nats_url, two_stage, spy):
    async with decider(nats_url, "d1"), worker(nats_url, "w1", echo) as work:
        reply = await two_stage.request(SUBJECT, b"x", within=NEVER)
        assert reply.data == b"re: x"
        await spy.settle(work)
        assert spy.seen == ["d1"]  # the worker answered before its own acknowledgement was due


async def test_the_next_holder_dying_fails_the_request_though_the_first_lives(nats_url, two_stage, spy):
    """After the hand-over the requester probes the worker, not the (live) decider."""
    async with decider(nats_url, "d1"), worker(nats_url, "w1", never_answer) as work:
        call = asyncio.create_task(two_stage.request(SUBJECT, b"x", within=NEVER))
        await poll_until(lambda: spy.workers == ["w1"], "the worker to acknowledge")
        await work.close()
        with pytest.raises(ResponderLost, match="worker replica 'w1'"):
            await call
