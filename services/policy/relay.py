"""Relays allowed calls to the executor queue group and notices when the replica holding a call dies.

A plain NATS request to a queue group cannot tell "the tool is slow" from "the executor that took
the call was killed": both are silence until the call timeout (120 s by default). So each request
asks for an acknowledgement (`EXEC_WANT_ACK`); the replica that takes the call names itself in it
once the call has run for a moment (fast calls answer first and cost no extra message).
While a call is unanswered, its replica is probed on its own liveness subject every
`PROBE_EVERY` seconds; "no responders" there (NATS drops a dead connection's subscriptions at once)
or `MAX_MISSES` unanswered probes in a row fail the call with `gateway_unavailable` and the honest
caveat that it may have run. A call that no replica acknowledged within `ACK_GRACE` seconds (lost on
the way to a replica that was dying) fails the same way. Calls that answer within a quarter second
cost nothing extra; slower ones one small message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from bastion_common import subjects

__all__ = ["ExecRelay", "ExecutorLost"]

PROBE_EVERY = 1.0
PROBE_TIMEOUT = 1.0
MAX_MISSES = 3
ACK_GRACE = 5.0
_STATUS = "Status"
_NO_RESPONDERS = "503"


class ExecutorLost(Exception):
    """The replica that held the call is gone (or none ever took it); the call may have run."""


@dataclass
class _Pending:
    future: asyncio.Future[Msg]
    executor: str | None = None
    sent_at: float = field(default_factory=time.monotonic)


class ExecRelay:
    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox()
        self._tokens = itertools.count()
        self._pending: dict[str, _Pending] = {}
        self._probes: dict[str, asyncio.Task[bool]] = {}
        self._misses: dict[str, int] = {}

    async def start(self) -> None:
        await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)

    async def request(self, data: bytes, within: float, subject: str = subjects.EXEC_CALL) -> Msg:
        """The executor's reply; raises NoRespondersError, nats TimeoutError or ExecutorLost."""
        token = str(next(self._tokens))
        pending = _Pending(asyncio.get_running_loop().create_future())
        self._pending[token] = pending
        try:
            await self._nc.publish(subject, data, reply=f"{self._prefix}.{token}",
                                   headers={subjects.EXEC_WANT_ACK: "1"})
            deadline = pending.sent_at + within
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NatsTimeout
                with contextlib.suppress(asyncio.TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(pending.future), min(remaining, PROBE_EVERY))
                if pending.executor is None:
                    if time.monotonic() - pending.sent_at > ACK_GRACE:
                        raise ExecutorLost("no executor replica acknowledged the call")
                elif not await self._alive(pending.executor):
                    raise ExecutorLost(f"executor replica {pending.executor!r} stopped before answering")
        finally:
            self._pending.pop(token, None)
            if not pending.future.done():
                pending.future.cancel()

    async def _on_reply(self, msg: Msg) -> None:
        pending = self._pending.get(msg.subject.rpartition(".")[2])
        if pending is None or pending.future.done():
            return
        headers = msg.headers or {}
        if headers.get(_STATUS) == _NO_RESPONDERS and not msg.data:
            pending.future.set_exception(NoRespondersError())
        elif subjects.EXEC_ACCEPTED_BY in headers and not msg.data:
            pending.executor = headers[subjects.EXEC_ACCEPTED_BY]
        else:
            pending.future.set_result(msg)

    async def _alive(self, instance: str) -> bool:
        """One probe at a time per replica, shared by every call waiting on it."""
        probe = self._probes.get(instance)
        if probe is None:
            probe = self._probes[instance] = asyncio.create_task(self._probe(instance))
            probe.add_done_callback(lambda _: self._probes.pop(instance, None))
        return await asyncio.shield(probe)

    async def _probe(self, instance: str) -> bool:
        try:
            await self._nc.request(subjects.executor_alive_subject(instance), b"", timeout=PROBE_TIMEOUT)
        except NoRespondersError:
            return False
        except NatsTimeout:
            self._misses[instance] = misses = self._misses.get(instance, 0) + 1
            return misses < MAX_MISSES
        self._misses.pop(instance, None)
        return True
