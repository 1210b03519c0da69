"""The audit consumer's pull subscription (`services.audit.writer._NatsTimeouts`) as FastStream's
fetch loop sees it: a fetch the connection refuses must still wait a moment, because that loop
fetches again at once for as long as its broker runs, and a loop that never waits starves the
event loop (the service's own stop included)."""

from __future__ import annotations

import asyncio

import pytest
from nats.errors import ConnectionClosedError
from nats.js.errors import ServiceUnavailableError

from services.audit.writer import _NatsTimeouts

pytestmark = pytest.mark.unit


class _Refusing:
    """A pull subscription on a closed connection: nats-py raises before anything is sent."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def fetch(self, batch: int = 1, **options: object) -> list[object]:
        raise self.error


@pytest.mark.parametrize("error", [ConnectionClosedError(), ServiceUnavailableError()])
async def test_a_refused_fetch_lets_the_event_loop_run_before_it_fails(error):
    ran: list[int] = []

    async def other_work() -> None:
        for turn in range(3):
            ran.append(turn)
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    with pytest.raises(type(error)):  # FastStream's loop catches these; they must still reach it
        await _NatsTimeouts(_Refusing(error), most_pending=10).fetch(10, timeout=1.0)
    assert ran == [0, 1, 2]  # the other task ran to its end while the fetch failed
    await other
