"""A spy on the replies the bus carries back to requesters (`_INBOX.>`): who acknowledged a call,
what a replica answered after its requester gave up."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TypeVar

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from libs.common.bus.nats import connect
from tests.support.barrier import processed

__all__ = ["inbox_spy"]

T = TypeVar("T")


class Seen(list[T]):
    """What the spy took, in order; `caught_up()` returns once every reply the server routed before
    the call has reached the list."""

    def __init__(self, nc: NATS) -> None:
        super().__init__()
        self._nc = nc

    async def caught_up(self) -> None:
        await processed(self._nc)


@contextlib.asynccontextmanager
async def inbox_spy(nats_url: str, pick: Callable[[Msg], Iterable[T]]) -> AsyncIterator[Seen[T]]:
    """What `pick` takes from each reply sent to any inbox while the spy is open, in order; the
    spy's subscription is in place when this yields."""
    nc = await connect(nats_url, "spy")
    seen: Seen[T] = Seen(nc)

    async def on_msg(msg: Msg) -> None:
        seen.extend(pick(msg))

    await nc.subscribe("_INBOX.>", cb=on_msg)
    await processed(nc)
    try:
        yield seen
    finally:
        await nc.close()
