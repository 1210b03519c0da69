"""BusClient parses and writes NATS message headers itself (cheaper than nats-py's code); the
result must stay nats-py's, block for block and byte for byte. If a nats-py upgrade changes its
rules, these fail."""

from __future__ import annotations

import asyncio
import cProfile
import gc
import hashlib
import inspect
import pstats

import nats.errors
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from libs.common.bus.bus_client import BusClient, parse_header_lines
from tests.support.bus_pair import sender_and_receiver

pytestmark = pytest.mark.integration  # two of its tests go through a real nats-server

nats_py = NATS._parse_header_lines

BLOCKS = [
    b"",
    b"\r\n",
    b"\r\n\r\n",
    b"Bastion-Want-Ack: 1\r\nBastion-Accept-By: 1764093737.123456\r\n\r\n",
    b"Name:Value\r\n",
    b"Name:\tValue\t\r\n",
    b"  Name  :  spaced value  \r\n",
    b"Na me: inner space\r\n",
    b"Na\tme: inner tab\r\n",
    b"Na\x0bme: vertical tab\r\nNa\x0cme: form feed\r\n",
    b"Na\x1cme: file separator\r\nNa\x1fme: unit separator\r\n",  # str.isspace, yet bytes.strip keeps them
    b"\x1cName: leading separator\r\nName\x1e: trailing separator\r\n",
    b"Na\x85me: next line byte\r\n",  # not ASCII: dropped
    "Nämé: non-ASCII name\r\n".encode(),
    "Name: non-ASCII välue ✓\r\n".encode(),
    b"Name: bad utf-8 \xff\xfe value\r\n",
    b"no colon at all\r\n",
    b": empty name\r\n",
    b"Empty:\r\n",
    b"Twice: first\r\nTwice: second\r\n",
    b"Colons: a:b:c\r\n",
    b"Bare\rCR: x\r\nBare\nLF: y\r\n",
    b"Last: without crlf",
    b"NATS/1.0\r\nName: value\r\n",  # a status-like line is not a header: no colon
]


@pytest.mark.parametrize("raw", BLOCKS)
def test_the_same_headers_as_nats_py_for_odd_blocks(raw: bytes) -> None:
    assert parse_header_lines(raw) == nats_py(raw)


_LINE_BYTES = st.sampled_from(
    [b"a", b"Z", b"-", b"_", b" ", b"\t", b"\x0b", b"\x0c", b"\x1c", b"\x1f", b"\x85", b"\xa0", b"\xff",
     b"\xc3\xa4", b"\xe2\x80\x83", b":", b"\r", b"\n", b"\r\n", b"0", b"."]
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(st.lists(_LINE_BYTES, max_size=12).map(b"".join), max_size=6).map(b"\r\n".join))
def test_the_same_headers_as_nats_py_for_any_block(raw: bytes) -> None:
    assert parse_header_lines(raw) == nats_py(raw)


def test_bus_clients_parse_with_it() -> None:
    assert BusClient._parse_header_lines is parse_header_lines
    assert BusClient()._parse_header_lines(b"A: 1\r\n") == {"A": "1"}


async def test_headers_arrive_as_nats_py_would_hand_them(nats_url: str) -> None:
    """Through a real server, from a raw publisher (nats-py would refuse to send the spaced name)."""
    client = BusClient()
    await client.connect(nats_url)
    host, _, port = nats_url.removeprefix("nats://").rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        got: asyncio.Queue[dict[str, str] | None] = asyncio.Queue()

        async def keep(msg: Msg) -> None:
            await got.put(msg.headers)

        await client.subscribe("headers.test", cb=keep)
        await client.flush()
        await reader.readline()  # INFO
        block = "NATS/1.0\r\nAccept-By: 1764093737.123456\r\nSpaced Name: dropped\r\nWith: a: b välue ✓\r\n\r\n"
        head = block.encode()
        writer.write(
            b'CONNECT {"verbose":false,"headers":true}\r\n'
            + f"HPUB headers.test {len(head)} {len(head) + 1}\r\n".encode()
            + head
            + b"x\r\nPING\r\n"
        )
        assert await reader.readline() == b"PONG\r\n"
        assert await asyncio.wait_for(got.get(), 5) == {"Accept-By": "1764093737.123456", "With": "a: b välue ✓"}
    finally:
        writer.close()
        await client.close()


class _Capturing:
    """What a client would write for a publish, without a connection (`_flush_queue` is None)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    async def _send_command(self, cmd: bytes, priority: bool = False) -> None:
        self.sent.append(bytes(cmd))


class _NatsPy(_Capturing, NATS):
    pass


class _Ours(_Capturing, BusClient):
    pass


async def _written(client: _Capturing, headers: dict[str, str]) -> bytes | type[BaseException]:
    try:
        await client._send_publish("a.subject", "_INBOX.reply", b"payload", 7, headers)  # type: ignore[attr-defined]
    except (nats.errors.Error, UnicodeError) as exc:
        return type(exc)
    return client.sent[-1]


HEADER_DICTS = [
    {},
    {"Bastion-Want-Ack": "1", "Bastion-Accept-By": "1764093737.123456", "Bastion-Signature": "ab" * 32},
    {"  Spaced-Name  ": "  spaced value  ", "Tab": "\tv\t"},
    {"Line-Breaks": "a\r\nb\nc\rd", "Unicode": "välue ✓", "Empty": ""},
    {"": "empty name skipped", "   ": "blank name skipped", "Kept": "yes"},
    {"Bad Name": "refused"},
    {"Bad:Name": "refused"},
    {"Nämé": "refused"},
]


@pytest.mark.parametrize("headers", HEADER_DICTS)
async def test_the_same_publish_as_nats_py(headers: dict[str, str]) -> None:
    theirs, ours = _NatsPy(), _Ours()
    for _ in range(2):  # the second time with the names remembered
        assert await _written(ours, headers) == await _written(theirs, headers)
    assert ours.stats == theirs.stats


_TEXT = st.text(st.sampled_from([*"aZ-_.!#~ \t\r\n:ä✓", "\x00", "\x1c", "\u2003"]), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_TEXT, _TEXT, max_size=4))
async def test_the_same_publish_as_nats_py_for_any_headers(headers: dict[str, str]) -> None:
    assert await _written(_Ours(), headers) == await _written(_NatsPy(), headers)


async def test_a_bus_client_publish_arrives_with_its_headers(nats_url: str) -> None:
    async with sender_and_receiver(nats_url) as (sender, receiver):
        sub = await receiver.subscribe("headers.sent")
        await receiver.flush()
        sent = {"Bastion-Accept-By": "1764093737.123456", "Broken": "a\r\nb", "Unicode": "välue ✓"}
        await sender.publish("headers.sent", b"x", headers=sent)
        msg = await sub.next_msg(timeout=30)  # a bound on a hang: a lost message (test_bus_client_flush.py) never comes
        assert msg.headers == {**sent, "Broken": "a  b"} and msg.data == b"x"


NATS_PY_PUBLISH = "97d776c391adfd8ba8278b1af77f7eab627cc8a420894f5fc70da87019f3f21a"
"""sha256 of nats-py 2.16.0's `Client.publish` source, whose checks `BusClient.publish` repeats inline."""


def test_nats_py_publish_is_the_one_repeated() -> None:
    # a nats-py that checks more (or differently) before a publish must be read again, and the
    # override brought in line, before this digest is renewed
    assert hashlib.sha256(inspect.getsource(NATS.publish).encode()).hexdigest() == NATS_PY_PUBLISH


CASES = [
    ("a.subject", "", b"x", NATS.CONNECTED, {}),
    ("a.subject", "_INBOX.r", b"x", NATS.DRAINING_SUBS, {}),
    ("a.subject\r\nPUB evil 1\r\n", "", b"x", NATS.CONNECTED, {}),  # a command smuggled in the subject
    ("a.subject", "r\r\nUNSUB 1", b"x", NATS.CONNECTED, {}),  # and in the reply
    ("a subject", "", b"x", NATS.CONNECTED, {}),
    ("a.subject", "a\treply", b"x", NATS.CONNECTED, {}),
    ("", "", b"x", NATS.CONNECTED, {}),
    ("a.subject\r\n", "", b"x", NATS.CONNECTED, {"_skip_subject_validation": True}),
    ("a.subject", "", b"x", NATS.CLOSED, {}),
    ("a.subject", "", b"x", NATS.DRAINING_PUBS, {}),
    ("a.subject", "", b"x", NATS.RECONNECTING, {}),  # buffering off: refused
    ("a.subject", "", b"x", NATS.RECONNECTING, {"_max_pending_size": 100}),
    ("a.subject", "", b"x" * 101, NATS.RECONNECTING, {"_max_pending_size": 100}),
    ("a.subject", "", b"x" * 11, NATS.CONNECTED, {"_max_payload": 10}),
    ("a.subject", "", b"x" * 10, NATS.CONNECTED, {"_max_payload": 10}),
]


async def _outcome(client: _Capturing, case: tuple) -> bytes | type[BaseException]:
    subject, reply, payload, status, attributes = case
    client._status = status  # type: ignore[attr-defined]
    for name, value in attributes.items():
        setattr(client, name, value)
    try:
        await client.publish(subject, payload, reply, headers={"Trace": "t"})  # type: ignore[attr-defined]
    except nats.errors.Error as exc:
        return type(exc)
    return client.sent[-1]


@pytest.mark.parametrize("case", CASES)
async def test_the_same_publish_or_refusal_as_nats_py(case: tuple) -> None:
    assert await _outcome(_Ours(), case) == await _outcome(_NatsPy(), case)


async def test_a_smuggled_command_is_refused_before_anything_is_written() -> None:
    ours = _Ours()
    ours._status = NATS.CONNECTED
    with pytest.raises(nats.errors.BadSubjectError):
        await ours.publish("a.subject", b"x", "r\r\nPUB evil 1\r\n")
    assert ours.sent == []
    assert ours.stats["out_msgs"] == 0


async def test_a_publish_costs_fewer_python_calls_than_nats_py() -> None:
    async def calls(client: _Capturing) -> int:
        client._status = NATS.CONNECTED  # type: ignore[attr-defined]
        profile = cProfile.Profile()
        # no collection inside the window: one would run the finalizers of whatever earlier tests
        # left for it, and their calls would be counted as the publish's
        gc.collect()
        gc.disable()
        try:
            profile.enable()
            await client.publish("a.subject", b"x", "_INBOX.r")  # type: ignore[attr-defined]
            profile.disable()
        finally:
            gc.enable()
        return sum(entry[1] for entry in pstats.Stats(profile).stats.values())  # type: ignore[attr-defined]

    # without headers both write what nats-py does; ours skips the six calls its `publish` checks with
    assert await calls(_Ours()) <= await calls(_NatsPy()) - 3
