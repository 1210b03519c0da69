"""`BusClient.publish` checks what nats-py's `publish` checks, and refuses the same things the same way."""

from __future__ import annotations

import cProfile
import hashlib
import inspect
import pstats

import nats.errors
import pytest
from nats.aio.client import Client as NATS

from libs.common.bus.bus_client import BusClient

pytestmark = pytest.mark.unit

NATS_PY_PUBLISH = "97d776c391adfd8ba8278b1af77f7eab627cc8a420894f5fc70da87019f3f21a"
"""sha256 of nats-py 2.16.0's `Client.publish` source, whose checks `BusClient.publish` repeats inline."""


def test_nats_py_publish_is_the_one_repeated() -> None:
    # a nats-py that checks more (or differently) before a publish must be read again, and the
    # override brought in line, before this digest is renewed
    assert hashlib.sha256(inspect.getsource(NATS.publish).encode()).hexdigest() == NATS_PY_PUBLISH


class _Capturing:
    """What a client would write for a publish, without a connection."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    async def _send_command(self, cmd: bytes, priority: bool = False) -> None:
        self.sent.append(bytes(cmd))


class _NatsPy(_Capturing, NATS):
    pass


class _Ours(_Capturing, BusClient):
    pass


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
        profile.enable()
        await client.publish("a.subject", b"x", "_INBOX.r")  # type: ignore[attr-defined]
        profile.disable()
        return sum(entry[1] for entry in pstats.Stats(profile).stats.values())  # type: ignore[attr-defined]

    # without headers both write what nats-py does; ours skips the six calls its `publish` checks with
    assert await calls(_Ours()) <= await calls(_NatsPy()) - 3
