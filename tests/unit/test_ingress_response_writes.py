"""`HeadWithBody`: a response head leaves with its body in one write, alone by the end of the
loop's turn, and never after what was written behind it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.ingress.response_writes import HeadWithBody

pytestmark = pytest.mark.unit

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recorded:
    """A transport that records each call that would reach the socket."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, parts: Any) -> None:
        self.calls.append(("writelines", b"".join(parts)))

    def write_eof(self) -> None:
        self.calls.append(("eof", b""))

    def close(self) -> None:
        self.calls.append(("close", b""))

    def is_closing(self) -> bool:
        return False


async def test_a_head_and_its_body_leave_in_one_write() -> None:
    raw = Recorded()
    transport = HeadWithBody(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(HEAD)
    assert raw.calls == []
    transport.write(b"{}")
    assert raw.calls == [("writelines", HEAD + b"{}")]
    await asyncio.sleep(0)  # the turn's end finds nothing held
    assert raw.calls == [("writelines", HEAD + b"{}")]
    assert transport.is_closing() is False  # the rest is the transport's


async def test_a_head_without_a_body_yet_leaves_by_the_end_of_the_turn() -> None:
    raw = Recorded()
    transport = HeadWithBody(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(HEAD)
    await asyncio.sleep(0)
    assert raw.calls == [("write", HEAD)]
    transport.write(b"data: 1\n\n")
    assert raw.calls[-1] == ("write", b"data: 1\n\n")


@pytest.mark.parametrize("end", ["close", "write_eof"])
async def test_a_held_head_goes_out_before_the_connection_ends(end: str) -> None:
    raw = Recorded()
    transport = HeadWithBody(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(HEAD)
    getattr(transport, end)()
    assert raw.calls == [("write", HEAD), ("close" if end == "close" else "eof", b"")]
