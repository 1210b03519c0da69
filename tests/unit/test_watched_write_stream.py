"""`WatchedWriteStream`: a send that finds the transport's writer gone reports the session lost (the
SDK's HTTP+SSE writer ends for good at its first failed POST), on real anyio memory streams."""

from __future__ import annotations

import anyio
import pytest

from services.executor.upstreams.mcp.watched_stream import WatchedWriteStream

pytestmark = pytest.mark.unit


async def test_sends_pass_through_while_the_writer_reads() -> None:
    send, receive = anyio.create_memory_object_stream[str](1)
    lost: list[bool] = []
    async with receive:
        writes = WatchedWriteStream(send, lambda: lost.append(True))
        await writes.send("hello")
        assert receive.receive_nowait() == "hello" and not lost
        await writes.aclose()


@pytest.mark.parametrize("gone", ["reader", "sender"])
async def test_a_send_with_its_writer_gone_reports_the_session_lost(gone: str) -> None:
    send, receive = anyio.create_memory_object_stream[str](1)
    lost: list[bool] = []
    writes = WatchedWriteStream(send, lambda: lost.append(True))
    if gone == "reader":  # the SDK's writer task ended: nobody takes what is sent
        await receive.aclose()
        expected: type[Exception] = anyio.BrokenResourceError
    else:
        await send.aclose()
        await receive.aclose()
        expected = anyio.ClosedResourceError
    with pytest.raises(expected):
        await writes.send("lost")
    await writes.aclose()
    assert lost == [True]
