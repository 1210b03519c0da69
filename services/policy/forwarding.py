"""Policy's hand-off of an allowed request to the executors, after which policy is out of the way.

The request goes to `EXEC_CALL` / `EXEC_REQUEST` with the requester's reply subject in
`subjects.REPLY_TO` (signed with the body), so the executor's acknowledgement and outcome go straight
back to ingress (or codemode): three messages per call instead of four, and no relay task in policy.
The message's own reply subject is policy's: nothing answers there except NATS's "no responders",
which the server sends to the publisher alone when no executor is subscribed at all. That is the one
thing policy waits for, and only as long as it can take to come back: a forwarded request is
remembered in two generations of a dict swapped every second (no timer per request).

Charged calls are remembered in `Charges` until their deadline, so a `Refund` that names one (sent by
the executor, or by the requester when it lost track of the call) gives its budgets back.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from libs.common.bus.work_signing import WorkSigner
from libs.common.contracts import subjects
from libs.common.runtime.tasks import cancel_and_wait

from .quotas import Charged

__all__ = ["Charges", "Forwarded", "Forwarder"]

_STATUS = "Status"
_NO_RESPONDERS = "503"
_GENERATION = 1.0
"""Seconds a forwarded request is remembered at least (at most twice that): "no responders" comes
back within a round trip."""


@dataclass(frozen=True, slots=True)
class Forwarded:
    id: str
    reply: str
    """The requester's reply subject, where policy answers if no executor took the request."""


class Forwarder:
    """`await start()` first; `forward()` per allowed request.

    `on_no_executor` is awaited for a request no executor was subscribed to receive."""

    def __init__(self, nc: NATS, signer: WorkSigner, on_no_executor: Callable[[Forwarded], Awaitable[None]]) -> None:
        self._nc = nc
        self._signer = signer
        self._on_no_executor = on_no_executor
        self._prefix = nc.new_inbox()
        self._tokens = itertools.count()
        self._young: dict[str, Forwarded] = {}
        self._old: dict[str, Forwarded] = {}
        self._rotation: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)
        self._rotation = asyncio.create_task(self._rotate(), name="policy-forwarded-rotation")

    async def stop(self) -> None:
        await cancel_and_wait(self._rotation)

    async def forward(self, subject: str, data: bytes, headers: dict[str, str], forwarded: Forwarded) -> None:
        """Send `data` to the executors; they answer `forwarded.reply`, which the signature covers."""
        token = str(next(self._tokens))
        self._young[token] = forwarded
        headers[subjects.REPLY_TO] = forwarded.reply
        headers.update(self._signer.headers(subject, forwarded.reply, data))
        await self._nc.publish(subject, data, reply=f"{self._prefix}.{token}", headers=headers)

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject.rpartition(".")[2]
        forwarded = self._young.pop(token, None) or self._old.pop(token, None)
        if forwarded is not None and (msg.headers or {}).get(_STATUS) == _NO_RESPONDERS:
            await self._on_no_executor(forwarded)

    async def _rotate(self) -> None:
        while True:
            await asyncio.sleep(_GENERATION)
            self._old, self._young = self._young, {}


class Charges:
    """What each forwarded call was charged, until its deadline.

    The one replica that charged a call is the one that can refund it (a replica that dies takes its
    charges with it, and they stay charged: the calls may have run)."""

    def __init__(self) -> None:
        self._by_id: dict[str, tuple[Charged, float]] = {}
        self._expiry: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._by_id)

    def hold(self, call_id: str, charged: Charged, until: float) -> None:
        """Remember `charged` for the call `call_id` until `until` (Unix time)."""
        self._forget_expired()
        self._by_id[call_id] = (charged, until)
        heapq.heappush(self._expiry, (until, call_id))

    def take(self, call_id: str) -> Charged | None:
        """The charge of `call_id`, once: a second refund of the same call finds nothing."""
        self._forget_expired()
        held = self._by_id.pop(call_id, None)
        return held[0] if held is not None else None

    def _forget_expired(self) -> None:
        now = time.time()
        while self._expiry and self._expiry[0][0] <= now:
            until, call_id = heapq.heappop(self._expiry)
            held = self._by_id.get(call_id)
            if held is not None and held[1] == until:
                del self._by_id[call_id]
