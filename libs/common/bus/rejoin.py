"""Waiting out a replica's move between NATS members, instead of failing the calls it missed.

A replica leaving a NATS member that stopped answering (`libs.common.bus.bus_client`) is subscribed
nowhere for a moment: the other members drop the hung member's routes, and with them its
subscriptions, before the replica has reconnected elsewhere. A call sent then finds nobody
subscribed, and NATS (or policy, for the executors) says so at once. Nothing ran, so sending the
call again is safe. A requester (ingress, codemode; policy for the chat completions it relays) sends
it again, after a short pause, for as long as a replica of that role answered within
`BASTION_REJOIN_WAIT` seconds and the call has time left; a role that has not answered for that
long, or never, fails the call at once (no executor started yet, or every one stopped).

The loop is the requester's own (`wait` is its step): nothing here calls back into it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

__all__ = ["Nobody", "Rejoin"]

_FIRST_PAUSE = 0.05
_LONGEST_PAUSE = 0.5


@dataclass(frozen=True, slots=True)
class Nobody:
    """A call no replica of `role` was subscribed to receive: it did not run."""

    role: str


class Rejoin:
    """When each role last answered this requester.

    And whether a call that found nobody of a role is worth sending again (`waited`)."""

    def __init__(self, within: float) -> None:
        self._within = within
        self._heard: dict[str, float] = {}

    def heard(self, role: str, at: float | None = None) -> None:
        """A replica of `role` was subscribed and answered at `at` (monotonic; now when not given)."""
        moment = time.monotonic() if at is None else at
        if moment > self._heard.get(role, 0.0):
            self._heard[role] = moment

    async def wait(self, missed: Nobody, deadline: float, tries: int) -> str | None:
        """The wait step of a requester's send loop, after a send that found nobody of a role.

        None after a pause, the call worth sending its `tries`-th time again (0 first); else, at once,
        why it is given up. `deadline`: the call's, Unix time."""
        if await self.waited(missed, deadline, tries):
            return None
        return self.why(missed, waited=tries > 0)

    async def waited(self, missed: Nobody, deadline: float, tries: int) -> bool:
        """After a pause, True.

        The call worth sending again, its `tries`-th time (0 first), as a replica of the role answered
        within `within` seconds and the call's `deadline` (Unix time) leaves room. False at once
        otherwise."""
        last = self._heard.get(missed.role)
        pause = min(_FIRST_PAUSE * 2**tries, _LONGEST_PAUSE)
        if last is None or time.monotonic() + pause - last > self._within or time.time() + pause >= deadline:
            return False
        await asyncio.sleep(pause)
        return True

    def why(self, missed: Nobody, *, waited: bool) -> str:
        """What the agent reads when the call is given up: `waited` for a replica to rejoin, or at once."""
        last = self._heard.get(missed.role)
        if not waited or last is None:
            return f"no {missed.role} service is running behind this gateway; retry shortly or check `bastion up`"
        return (
            f"no {missed.role} replica has been subscribed since one answered {time.monotonic() - last:.1f}s ago "
            "(it stopped, or it is still leaving a NATS member that stopped answering); retry shortly or check "
            "`bastion up`"
        )
