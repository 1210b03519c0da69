"""The responder's side of the relay: liveness, admission and acknowledgement of the calls a replica holds.

A replica taking calls from a queue group (policy, executor) answers its own liveness subject, answers
unrun a request whose requester has already given up on it (`Acknowledger.admit`, `too_late`), and
acknowledges each request still running after a moment (`Acknowledger.watch`), so that the requester
(`libs.common.bus.relay`) can tell a slow call from a dead replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any, Literal

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from libs.common.bus.timetable import SLACK, Timetable
from libs.common.contracts import subjects
from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.messages import CallOutcome, GatewayError
from libs.common.contracts.subjects import Holders
from libs.common.settings import RequestPathSettings

__all__ = ["Acknowledger", "reply_subject", "too_late"]


def reply_subject(msg: Msg) -> str | None:
    """Where a request is answered.

    The requester's subject a forwarding policy named (`subjects.REPLY_TO`), else the message's own reply
    subject."""
    return (msg.headers or {}).get(subjects.REPLY_TO) or msg.reply


class Acknowledger:
    """The responder's side.

    Answers this replica's liveness subject (`start()`), refuses requests whose requester has given up on
    them (`admit()`), and acknowledges each request that asked for it and is still running `after`
    seconds later, or sooner when its requester's grace runs out before that (`watch()`)."""

    def __init__(self, nc: NATS, holders: Holders, *, instance: str, after: float, margin: float = 0.5) -> None:
        self._nc = nc
        self._headers = {holders.accepted_by: instance}
        self._alive_subject = holders.alive_subject(instance)
        self._after = after
        self._margin = margin
        self._sending: set[asyncio.Task[None]] = set()
        self._acknowledged: dict[str, asyncio.Task[None]] = {}
        """Reply subject of each request acknowledged and still running -> the task sending the ack."""
        self._due = Timetable(min(SLACK, margin / 5))
        """When each watched request is due its acknowledgement; late by a fifth of `margin` at most,
        which leaves the rest for the acknowledgement's way to the requester."""

    @classmethod
    def of(cls, nc: NATS, holders: Holders, instance: str, settings: RequestPathSettings) -> Acknowledger:
        """A responder's acknowledger, timed as its service is configured (`ack_after`, `ack_margin`)."""
        return cls(nc, holders, instance=instance, after=settings.ack_after, margin=settings.ack_margin)

    async def start(self) -> None:
        # answered until the connection drains, so calls still in flight during a stop are not declared lost
        await self._nc.subscribe(self._alive_subject, cb=self._on_alive)

    def admit(self, msg: Msg) -> bool:
        """False when `msg` came too late to be run.

        Its requester has failed it as lost, or will before an acknowledgement could reach it. The caller
        answers it unrun."""
        left = _time_left(msg)
        return left is None or left > self._margin

    def watch(self, msg: Msg, call: asyncio.Task[Any], reply: str | None = None) -> None:
        """Acknowledge `msg` if `call`, the task answering it, is still running after a moment.

        The acknowledgement goes to `reply`, by default the message's reply subject.

        Only then: a fast call's answer is its own proof of life, and one message fewer per call
        is real latency on the hot path. A request that spent long on the way is acknowledged
        sooner, so the acknowledgement arrives before its requester gives up."""
        reply = reply or msg.reply
        if reply and msg.headers and subjects.WANT_ACK in msg.headers:
            left = _time_left(msg)
            delay = self._after if left is None else max(0.0, min(self._after, left - self._margin))
            # skipped without a call when `call` is done by then: a fast call's answer was its proof of life
            self._due.at(delay, self._acknowledge_running, (reply, call), call)

    def acknowledged(self, reply: str) -> bool:
        """Whether the request answered on `reply` has been acknowledged (and is still running)."""
        return reply in self._acknowledged

    async def _on_alive(self, msg: Msg) -> None:
        """Being able to answer is the answer."""
        if msg.reply:
            await self._nc.publish(msg.reply, b"")

    def _acknowledge_running(self, watched: tuple[str, asyncio.Task[Any]]) -> None:
        reply, call = watched
        if call.done() or self._nc.is_closed:
            return
        self._acknowledged[reply] = self._spawn(self._publish(reply, self._headers))
        call.add_done_callback(lambda _: self._acknowledged.pop(reply, None))

    async def hand_over(self, reply: str) -> bool:
        """If the request answered on `reply` was acknowledged by this replica.

        Tell its requester that the replica passed it on (policy forwarded it), so it stops probing this
        replica for it; True then. Call it before the message that passes the request on: it is sent
        after the acknowledgement and before what follows on this connection."""
        sending = self._acknowledged.pop(reply, None)
        if sending is None:
            return False
        await sending
        await self._publish(reply, {subjects.HANDED_OVER: "1"})
        return True

    async def _publish(self, reply: str, headers: dict[str, str]) -> None:
        with contextlib.suppress(Exception):  # closing or draining: the requester's probes will tell
            await self._nc.publish(reply, b"", headers=headers)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        return task


def _time_left(msg: Msg) -> float | None:
    """Seconds until the requester of `msg` stops waiting for an acknowledgement; None if it did not say."""
    value = (msg.headers or {}).get(subjects.ACCEPT_BY)
    if value is None:
        return None
    try:
        return float(value) - time.time()
    except ValueError:
        return None


def too_late(request_id: str, role: Literal["policy", "executor"]) -> CallOutcome:
    """The answer to a request that arrived.

    Or would go on, after its requester stopped waiting (`Acknowledger.admit`, or its `deadline` passed):
    it is not run."""
    return CallOutcome(
        id=request_id,
        error=GatewayError(
            kind=ErrorKind.GATEWAY_TIMEOUT,
            message=f"the request reached the {role} after the gateway had stopped waiting for it; it did not run",
        ),
        decided_by=role,
        execution="not_run",
    )
