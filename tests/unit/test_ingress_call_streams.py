"""`CallStreams`: a call's stream is found by its subject's token until it closes, and `settle`
wakes for each event that goes out, not at the end of its wait."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from services.ingress.sessions import streams as streams_module
from services.ingress.sessions.streams import CallStreams

pytestmark = pytest.mark.unit


async def test_settle_wakes_as_the_reported_events_go_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams_module, "_SETTLE_WAIT", 3600.0)  # only the events can end the wait
    sent: list[dict[str, Any]] = []

    async def emit(message: dict[str, Any]) -> None:
        sent.append(message)

    streams = CallStreams(NATS(), None)  # type: ignore[arg-type]  # no codec: no agent requests here
    stream = streams.open("k1", emit, "warning")
    await stream.deliver({"method": "notifications/progress"})  # before anyone waits
    waiting = asyncio.ensure_future(stream.settle(3))
    await asyncio.sleep(0)
    assert not waiting.done()
    await stream.deliver({"method": "notifications/progress"})
    stream.skip()  # a log message below the stream's level
    await asyncio.wait_for(waiting, 30)  # a hang guard: settle returned because the events went out
    assert stream.received == 3 and len(sent) == 2


async def test_a_stream_is_found_by_its_token_until_closed() -> None:
    async def emit(message: dict[str, Any]) -> None:
        pass

    streams = CallStreams(NATS(), None)  # type: ignore[arg-type]
    first, second = streams.open("k1", emit), streams.open("k2", emit)
    assert first.subject.rpartition(".")[2] == first.token != second.token
    assert first.subject.rpartition(".")[0] == second.subject.rpartition(".")[0]
    streams.close(first)
    assert streams._open == {second.token: second}
    streams.close(second)
    assert streams._open == {}
