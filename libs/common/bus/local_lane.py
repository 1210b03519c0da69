"""Messages between services in one process, handed over in memory instead of through nats-server.

A co-located deployment (`cli.colocated`: ingress and the executor in one process, for
installs that scale by adding whole replicas) still speaks NATS between its services, subject for
subject and header for header; only the bytes skip the socket, nats-server and the parser when the
subscriber is in the same process. A delivered message is the same `nats.aio.msg.Msg` the server
would have produced, queued on the same subscription, so handlers cannot tell the difference.

What may go local, and why that keeps NATS's meaning:
- a queue subscription with a callback: NATS gives each message to one member of the group, and a
  member in this process is as valid a choice as any (the replicas elsewhere keep theirs);
- a reply-inbox wildcard (`<inbox prefix>.<nuid>.*`) with a callback: only its owner listens there.
Everything else (broadcasts, JetStream, KV, the liveness probes) goes through the server as before,
and so does a message the local subscriber could not take (closed, full, too large): the lane is a
shortcut, never a second delivery path with rules of its own. It does bypass nats-server's
permissions: services that share a process share its trust (deploy/README.md says what that costs).

A message written with `contracts.carried.carrying` (a routed call, its outcome) reaches a receiver
here as the very bytes object its sender published, carrying a copy of the model those bytes parse to:
the receiver takes that copy instead of parsing (`carried`), and everything else about the message
(bytes, headers, signature) is what the server would have delivered. `enable` (and `carrying_models`) turn that on.

A subscription whose callback only spawns or resolves and never waits (`in_place.immediate`: the
executor's entry, a relay's reply inbox) is handed a local message in place: its handler runs from the
publisher's own call (`in_place` says when, and what that keeps), as the connection's reader runs it
for a message from the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from libs.common.bus.bus_client import BusClient
from libs.common.bus.in_place import overflows
from libs.common.contracts import carried

__all__ = ["LaneClient", "LocalLane", "carrying_models", "enable", "new_client", "sharing"]

_CLOSED = NATS.CLOSED
_NOT_SENDING = (NATS.CLOSED, NATS.DRAINING_PUBS)
"""A connection's states (`_status`, read as its `is_closed`, `is_draining_pubs` would, a call less each)."""


class LocalLane:
    """The process's table of subscriptions a publisher in the same process may feed directly."""

    def __init__(self) -> None:
        self._groups: dict[str, list[Subscription]] = {}
        self._inboxes: dict[str, Subscription] = {}
        self._turn = 0

    def add(self, sub: Subscription) -> None:
        """Put `sub` on the lane if a local message may go to it (called in the subscriber's context)."""
        if sub._cb is None or sub._max_msgs:
            return
        subject = sub.subject
        if sub.queue:
            if "*" in subject or ">" in subject:
                return
            self._groups.setdefault(subject, []).append(sub)
        elif subject.startswith("_INBOX.") and subject.endswith(".*") and subject.count("*") == 1:
            self._inboxes[subject[:-2]] = sub
        else:
            return

    def find(self, subject: str) -> Subscription | None:
        """A live local subscriber for one message to `subject`, if any.

        Live: not unsubscribed, its connection open and still holding it (checked inline, twice a call)."""
        members = self._groups.get(subject)
        if members is not None:
            while members:
                self._turn += 1
                member = members[self._turn % len(members)]
                conn = member._conn
                held: Subscription | None = conn._subs.get(member._id)
                if not member._closed and conn._status != _CLOSED and held is member:
                    return member
                members.remove(member)  # it left: the server knows the group without it already
            return None
        prefix, dot, _ = subject.rpartition(".")
        inbox = self._inboxes.get(prefix) if dot else None
        if inbox is None:
            return None
        conn = inbox._conn
        held = conn._subs.get(inbox._id)
        if inbox._closed or conn._status == _CLOSED or held is not inbox:
            del self._inboxes[prefix]
            return None
        return inbox

    def members(self) -> int:
        """How many subscriptions the table holds (departed ones are dropped when next looked up)."""
        return sum(len(members) for members in self._groups.values()) + len(self._inboxes)


_process_lane: LocalLane | None = None


def enable() -> LocalLane:
    """Share one lane between every connection this process opens from now on (co-located services)."""
    global _process_lane
    if _process_lane is None:
        _process_lane = LocalLane()
    carried.handing_over(True)  # messages written from now on carry their model (`carried`)
    return _process_lane


@contextlib.contextmanager
def sharing(lane: LocalLane) -> Iterator[LocalLane]:
    """Connections opened inside the block join `lane` (services started together in one test)."""
    global _process_lane
    before, _process_lane = _process_lane, lane
    try:
        yield lane
    finally:
        _process_lane = before


@contextlib.contextmanager
def carrying_models() -> Iterator[None]:
    """Messages written inside the block carry their models (`contracts.carried`), as after `enable()`.

    For services started together on a lane (`sharing`) in one test, for as long as they run."""
    before = carried.handing_over(True)
    try:
        yield
    finally:
        carried.handing_over(before)


def new_client(lane: LocalLane | None = None) -> BusClient:
    """A client (not yet connected) on `lane`, by default the process's once `enable()` was called.

    One on no lane when there is none."""
    if lane is None:
        lane = _process_lane
    if lane is None:
        return BusClient()
    client = LaneClient()
    client.lane = lane
    return client


class LaneClient(BusClient):
    """A nats-py client that registers its subscriptions on `lane` and delivers there when it can."""

    lane: LocalLane | None = None

    def _subscribed(self, sub: Subscription) -> None:
        super()._subscribed(sub)
        if self.lane is not None:
            self.lane.add(sub)

    async def publish(
        self, subject: str, payload: bytes = b"", reply: str = "", headers: dict[str, str] | None = None
    ) -> None:
        lane = self.lane
        if lane is not None and len(payload) <= self._max_payload and self._status not in _NOT_SENDING:
            sub = lane.find(subject)
            if sub is not None and _hand_over(sub, subject, reply, payload, headers):
                return
        await super().publish(subject, payload, reply, headers)


def _hand_over(sub: Subscription, subject: str, reply: str, payload: bytes, headers: dict[str, str] | None) -> bool:
    """Give the message to `sub` as its own connection would have (False: it cannot take it).

    In place when its callback is `immediate`, free and nothing is queued ahead; queued otherwise."""
    if overflows(sub, len(payload)):  # the server's delivery drops and reports it, as nats-py does
        return False
    msg = Msg(
        _client=sub._conn,
        subject=subject,
        reply=reply,
        data=payload,
        headers=dict(headers) if headers else None,  # the publisher may reuse its dict
        _sid=sub._id,
    )
    in_place = sub._conn.in_place(sub)  # its connection's, shared with the server's deliveries
    if in_place is not None and in_place.takes(sub):
        in_place.deliver(sub, msg)
        return True
    try:
        sub._pending_queue.put_nowait(msg)
    except asyncio.QueueFull:
        return False
    sub._pending_size += len(payload)
    sub._received += 1
    return True
