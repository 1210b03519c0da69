"""Requests to a queue group that notice when the replica holding them dies.

A plain NATS request to a queue group cannot tell "the call is slow" from "the replica that took
it was killed": both are silence until the call timeout (120 s by default). So the requester asks
for an acknowledgement (`subjects.WANT_ACK`); the replica that takes the call names itself in one
once the call has run for `ack_after` seconds (fast calls answer first and cost no extra message).
While a call is unanswered, its replica is probed on its own liveness subject every `probe_every`
seconds; "no responders" there (NATS drops a dead connection's subscriptions at once) or
`probe_misses` unanswered probes in a row fail the call with `ResponderLost`. So does a call no
replica acknowledged within `ack_grace` seconds (lost on the way to a replica that was dying).
Either way the call may have run: callers must say so, and never retry it on their own.

A request the requester has failed as lost must not run afterwards (a replica paused for a while
would otherwise run it late, after the agent was told it failed). So every request carries the
time its requester stops waiting for an acknowledgement (`subjects.ACCEPT_BY`, absolute, so
clocks must agree within `margin`); the replica receiving it later than that minus `margin`
answers it unrun (`Acknowledger.admit`), and one that takes it acknowledges before then.

A routed call (`ToolCall`, `UpstreamRequest`) has two possible holders: policy while it decides
and charges, then the executor policy forwarded it to, which answers the requester directly
(`subjects.REPLY_TO`). Each acknowledges with its own header (`subjects.Holders` names each kind's
role, header and liveness subjects: `POLICY_HOLDERS`, `EXEC_HOLDERS`), so the requester probes
whichever holds the call; policy tells a requester whose call it had acknowledged that it handed it
over (`subjects.HANDED_OVER`), and the wait for an acknowledgement starts again. `routed_requester`
builds the requester that knows both.

`AckedRequester` is the requester's side (ingress, codemode -> policy -> executor; policy ->
executor for chat completions); `acknowledger.Acknowledger` the responder's (policy, executor).

Neither arms a timer per request: every call is due a look (its next probe, its deadline, its
acknowledgement) that almost never happens, because the answer comes first. Each side keeps those
looks in one heap on one loop timer (`timetable.Timetable`), which serves, at most once per `slack`, every
look then due; a look is late by at most that slack, never early.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from libs.common.bus.bus_client import BusClient, BusMark, BusStuck
from libs.common.bus.in_place import immediate
from libs.common.bus.timetable import SLACK, Timetable
from libs.common.bus.work_signing import WorkSigner
from libs.common.contracts import subjects
from libs.common.contracts.messages import BusMoved, CallOutcome, decode_outcome
from libs.common.contracts.subjects import Holders
from libs.common.runtime import tracing
from libs.common.settings import RequestPathSettings

__all__ = ["AckedRequester", "ResponderLost", "call_outcome", "routed_requester"]

_STATUS = "Status"
_NO_RESPONDERS = "503"


class ResponderLost(Exception):
    """The replica that held the call is gone (or none ever took it); the call may have run."""


@dataclass
class _Pending:
    wake: asyncio.Future[None]
    """Done when the request has its answer (`reply` or `error`) or is due a look (its timetable)."""
    reply: Msg | None = None
    error: BaseException | None = None
    holder: tuple[str, str] | None = None
    """(who, its liveness subject) of the replica that acknowledged the request last."""
    sent_at: float = field(default_factory=time.monotonic)

    def answer(self, reply: Msg | None = None, error: BaseException | None = None) -> None:
        self.reply, self.error = reply, error
        if not self.wake.done():
            self.wake.set_result(None)

    @property
    def answered(self) -> bool:
        return self.reply is not None or self.error is not None


class AckedRequester:
    """Sends requests to replicas of one kind (`holders`, e.g. `subjects.POLICY_HOLDERS`).

    `also` names further kinds of holders a request may pass to (an executor, after policy).

    All replies arrive on one wildcard inbox subscription (`start()` first), as with `nc.request`."""

    def __init__(
        self,
        nc: NATS,
        holders: Holders,
        *,
        settings: RequestPathSettings,
        signer: WorkSigner | None = None,
        also: tuple[Holders, ...] = (),
    ) -> None:
        self._nc = nc
        self._bus = nc if isinstance(nc, BusClient) else None
        """`nc` when it is a `BusClient` (which says when the bus, not a responder, failed a request)."""
        self._signer = signer
        self._role = holders.role
        self._holders = {h.accepted_by: (h.role, h.alive_subject) for h in (holders, *also)}
        self._settings = settings
        self._prefix = nc.new_inbox()
        self._tokens = itertools.count()
        self._pending: dict[str, _Pending] = {}
        self._probes: dict[str, asyncio.Task[bool]] = {}
        self._misses: dict[str, int] = {}
        self._looks = Timetable(SLACK)
        self._moved: tuple[float, BusMoved] | None = None
        """When a replica of a role holding these calls last said it lost its NATS member, and what it said."""
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop it was started on, which its requests run on: held, not looked up per request (a `getpid`
        each on CPython 3.11)."""

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # it only resolves a waiting request: on a lane, a local reply resolves it in the responder's publish
        await self._nc.subscribe(f"{self._prefix}.*", cb=immediate(self._on_reply))
        if isinstance(self._nc, BusClient):
            self._nc.when_moved(self._wake_all)
            await self._nc.subscribe(subjects.BUS_MOVED, cb=self._on_moved)

    async def _on_moved(self, msg: Msg) -> None:
        """A replica that may hold these calls is back from a member it lost.

        The calls it was sent meanwhile and has not acknowledged are likely lost there, so every call
        looks (`request`)."""
        try:
            moved = BusMoved.model_validate_json(msg.data)
        except ValueError:
            return
        if moved.role in {role for role, _ in self._holders.values()}:
            self._moved = (time.monotonic(), moved)
            self._wake_all()

    def _lost_in_move(self, pending: _Pending, role: str) -> ResponderLost | None:
        """A call sent before a replica said it lost its member.

        Unacknowledged longer than a replica that had it would take to say so (`ack_after`, plus
        `ack_margin` for the message's way)."""
        if self._moved is None:
            return None
        moved_at, moved = self._moved
        if moved_at <= pending.sent_at or time.monotonic() - pending.sent_at <= self._lost_after:
            return None
        return ResponderLost(
            f"a {moved.role} replica lost its NATS member {moved.left or '?'} (it stopped answering or went "
            f"away) and no {role} replica acknowledged the call, so it may be lost in that member"
        )

    @property
    def _lost_after(self) -> float:
        return self._settings.ack_after + self._settings.ack_margin

    def _wake_all(self) -> None:
        """The connection moved: every call waiting for an acknowledgement looks at once (`request`)."""
        for pending in self._pending.values():
            if not pending.wake.done():
                pending.wake.set_result(None)

    async def request(
        self, subject: str, data: bytes, within: float, extra: dict[str, str] | None = None, role: str | None = None
    ) -> Msg:
        """The reply; raises NoRespondersError, nats TimeoutError (after `within` s) or ResponderLost.

        `extra`: headers sent besides the relay's own; `role`: who `subject` reaches, when it is one of
        the further holders (a call sent straight to the executors) rather than the first."""
        settings = self._settings
        token = str(next(self._tokens))
        loop = self._loop
        assert loop is not None, "a request before start(): no subscription would hear its replies"
        pending = _Pending(loop.create_future())
        self._pending[token] = pending
        try:
            reply = f"{self._prefix}.{token}"
            headers = {subjects.WANT_ACK: "1", subjects.ACCEPT_BY: f"{time.time() + settings.ack_grace:.6f}"}
            if extra:
                headers.update(extra)
            if self._signer:
                headers.update(self._signer.headers(subject, reply, data))
            if tracing.enabled():
                tracing.inject(headers)  # the responder's span continues the caller's trace
            bus = self._bus
            mark = bus.mark() if bus is not None else None
            # sent into a socket it later left: unacknowledged then, the request went down with the member
            sent_on = mark[2] if mark is not None and self._nc.is_connected else None
            await self._nc.publish(subject, data, reply=reply, headers=headers)
            deadline = pending.sent_at + within
            while True:
                if pending.reply is not None:
                    if bus is not None:
                        bus.answered()
                    return pending.reply
                if pending.error is not None:
                    raise pending.error
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._timed_out(mark, within)
                # an unacknowledged call looks sooner: a replica that lost its member may have had it
                if pending.holder:
                    every = settings.probe_every
                else:
                    every = min(settings.probe_every, settings.ack_after + settings.ack_margin)  # `_lost_after`
                # resolving the very future awaited next: done by then (answered, or cancelled with this
                # task), the look runs nothing
                self._looks.wake_at(min(remaining, every), pending.wake)
                await pending.wake
                if pending.reply is not None or pending.error is not None:  # answered
                    continue
                pending.wake = loop.create_future()
                holder = pending.holder
                if holder is None:
                    if sent_on is not None and self._nc.stats["reconnects"] != sent_on:
                        raise self._unacknowledged(mark, role or self._role)
                    if (lost := self._lost_in_move(pending, role or self._role)) is not None:
                        raise lost
                    if time.monotonic() - pending.sent_at > settings.ack_grace:
                        raise self._unacknowledged(mark, role or self._role)
                elif not await self._alive(holder[1]):
                    raise ResponderLost(f"{holder[0]} stopped before answering")
        finally:
            self._pending.pop(token, None)

    def _timed_out(self, mark: BusMark | None, within: float) -> NatsTimeout:
        """The deadline passed: `BusStuck` (naming the NATS member) when the bus went silent."""
        if isinstance(self._nc, BusClient) and mark is not None:
            self._nc.timed_out()
            if (reason := self._nc.stuck_since(mark)) is not None:
                return BusStuck(f"{reason}: no answer within {within:g}s")
        return NatsTimeout()

    def _unacknowledged(self, mark: BusMark | None, role: str) -> ResponderLost:
        """No replica acknowledged in time: lost on the way to a dying replica, or in a silent NATS member."""
        if isinstance(self._nc, BusClient) and mark is not None:
            self._nc.timed_out()
            if (reason := self._nc.stuck_since(mark)) is not None:
                return ResponderLost(f"{reason}, so the call may not have reached any {role} replica")
        return ResponderLost(
            f"no {role} replica acknowledged the call (the replica, or the NATS member it is connected to, "
            "stopped answering)"
        )

    def _on_reply(self, msg: Msg) -> None:
        pending = self._pending.get(msg.subject.rpartition(".")[2])
        if pending is None or pending.answered:
            return
        headers = msg.headers
        if not headers or msg.data:  # the answer (an empty answer carries no header of ours)
            pending.answer(msg)
        elif headers.get(_STATUS) == _NO_RESPONDERS:
            pending.answer(error=NoRespondersError())
        elif subjects.HANDED_OVER in headers:  # policy forwarded it: an executor acknowledges it anew
            pending.holder, pending.sent_at = None, time.monotonic()
        else:
            for header, (role, alive_subject) in self._holders.items():
                if header in headers:
                    instance = headers[header]
                    pending.holder = (f"{role} replica {instance!r}", alive_subject(instance))
                    return
            pending.answer(msg)

    async def _alive(self, subject: str) -> bool:
        """One probe at a time per replica (its liveness subject), shared by every call waiting on it."""
        probe = self._probes.get(subject)
        if probe is None:
            probe = self._probes[subject] = asyncio.create_task(self._probe(subject))
            probe.add_done_callback(lambda _: self._probes.pop(subject, None))
        return await asyncio.shield(probe)

    async def _probe(self, subject: str) -> bool:
        try:
            await self._nc.request(subject, b"", timeout=self._settings.probe_timeout)
        except NoRespondersError:
            self._misses.pop(subject, None)
            return False
        except NatsTimeout:
            self._misses[subject] = misses = self._misses.get(subject, 0) + 1
            return misses < self._settings.probe_misses
        self._misses.pop(subject, None)
        return True


def routed_requester(nc: NATS, settings: RequestPathSettings) -> AckedRequester:
    """The requester of routed calls (`POLICY_CALL`, `POLICY_REQUEST`; `POLICY_LLM` too).

    Held first by a policy replica, then by the executor policy forwarded it to, which answers it
    directly."""
    return AckedRequester(nc, subjects.POLICY_HOLDERS, settings=settings, also=(subjects.EXEC_HOLDERS,))


def call_outcome(reply: Msg) -> CallOutcome:
    """The `CallOutcome` a routed call was answered with.

    (Its result still the upstream's bytes, for the agent's answer as they are), its `cost_usd` from the
    `CHARGED_USD` header the executor echoes from policy's forward. Raises `pydantic.ValidationError` for
    a malformed body."""
    outcome = decode_outcome(reply.data)
    charged = (reply.headers or {}).get(subjects.CHARGED_USD)
    if charged is not None:
        try:
            outcome.cost_usd = float(charged)
        except ValueError:
            pass  # a header we cannot read leaves the cost unknown, never fails the call
    return outcome
