"""`libs.common.bus.rejoin`: when a call that found nobody subscribed is sent again, and what the agent
reads when it is given up."""

from __future__ import annotations

import re
import time

import pytest

from libs.common.bus.rejoin import Nobody, Rejoin

pytestmark = pytest.mark.unit

EXECUTOR = Nobody("executor")


def _later(seconds: float = 60.0) -> float:
    return time.time() + seconds


async def test_a_role_never_heard_is_given_up_at_once() -> None:
    rejoin = Rejoin(within=6.0)
    rejoin.heard("policy")
    assert not await rejoin.waited(EXECUTOR, _later(), 0)
    assert rejoin.why(EXECUTOR, waited=False).startswith("no executor service is running behind this gateway")


async def test_a_role_heard_a_moment_ago_is_waited_for_with_growing_pauses() -> None:
    rejoin = Rejoin(within=6.0)
    rejoin.heard("executor")
    started = time.monotonic()
    assert await rejoin.waited(EXECUTOR, _later(), 0)
    assert await rejoin.waited(EXECUTOR, _later(), 2)  # 0.05 s, then 0.2 s
    assert time.monotonic() - started >= 0.25
    why = rejoin.why(EXECUTOR, waited=True)
    assert "since one answered" in why and "NATS member" in why


async def test_the_wait_ends_with_the_window_or_the_deadline() -> None:
    rejoin = Rejoin(within=6.0)
    rejoin.heard("executor", at=time.monotonic() - 5.99)
    assert not await rejoin.waited(EXECUTOR, _later(), 0)  # the pause would end past the window
    rejoin.heard("executor")
    assert not await rejoin.waited(EXECUTOR, _later(0.01), 0)  # the pause would end past the deadline
    assert not await Rejoin(within=0.0).waited(EXECUTOR, _later(), 0)  # 0: never sent again


def test_an_older_answer_never_moves_the_last_one_back() -> None:
    rejoin = Rejoin(within=6.0)
    rejoin.heard("executor")
    rejoin.heard("executor", at=time.monotonic() - 100)  # a call sent long ago answered now
    ago = re.search(r"since one answered (\d+\.\d)s ago", rejoin.why(EXECUTOR, waited=True))
    assert ago is not None and float(ago[1]) < 100


async def test_a_call_given_up_at_once_reads_as_not_running_and_one_that_waited_says_so() -> None:
    rejoin = Rejoin(within=0.5)
    rejoin.heard("executor")
    tries = 0
    while (waited := await rejoin.wait(EXECUTOR, _later(), tries)) is None:  # a requester's loop, as ingress's
        tries += 1
    assert tries > 0
    assert re.match(r"no executor replica has been subscribed since one answered \d+\.\ds ago", waited), waited
    at_once = await Rejoin(within=0.5).wait(EXECUTOR, _later(), 0)
    assert at_once is not None and at_once.startswith("no executor service is running")
