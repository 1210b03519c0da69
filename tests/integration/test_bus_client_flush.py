"""A flush vouches for every command before it: its PONG comes back only after the server has them.

nats-py 2.16 wrote a flush's PING straight to the socket while a SUB just made still waited for the
flusher task, so `subscribe(); flush(); <another client publishes>` lost the message about once in a
hundred fresh connections (CI lost one in tests/unit/test_bus_client_headers.py)."""

from __future__ import annotations

import nats
import pytest
from nats.aio.client import Client as NATS

from libs.common.bus.bus_client import BusClient
from tests.support.bus_pair import sender_and_receiver

pytestmark = pytest.mark.integration


def _record_writes(client: NATS) -> list[bytes]:
    """What the client hands its socket, in order (wrapping nats-py's transport, not our code)."""
    sent: list[bytes] = []
    transport = client._transport
    assert transport is not None
    write, writelines = transport.write, transport.writelines

    def each(payload: bytes) -> None:
        sent.append(bytes(payload))
        write(payload)

    def lines(payload: list[bytes]) -> None:
        sent.extend(bytes(line) for line in payload)
        writelines(payload)

    transport.write, transport.writelines = each, lines  # type: ignore[method-assign]
    return sent


@pytest.mark.parametrize(
    ("client_type", "order"),
    [(BusClient, [b"SUB", b"PING"]), (NATS, [b"PING", b"SUB"])],
    ids=["bus-client", "nats-py-alone"],
)
async def test_a_flush_sends_its_ping_after_the_subscription_before_it(
    nats_url: str, client_type: type[NATS], order: list[bytes]
) -> None:
    """`nats-py-alone` is why `BusClient._send_ping` exists: once it fails, nats-py orders them
    itself again and the override can go."""
    client = client_type()
    await client.connect(nats_url)
    try:
        sent = _record_writes(client)
        await client.subscribe("flush.order")
        await client.flush()
        assert [line.split(b" ", 1)[0].strip() for line in sent] == order
    finally:
        await client.close()


async def test_a_message_published_after_a_subscribe_and_flush_arrives(nats_url: str) -> None:
    """The symptom, 40 fresh pairs of connections: before the fix about one in a hundred was lost."""
    for _ in range(40):
        async with sender_and_receiver(nats_url) as (sender, receiver):
            sub = await receiver.subscribe("flush.arrives")
            await receiver.flush()
            await sender.publish("flush.arrives", b"x")
            try:
                msg = await sub.next_msg(timeout=30)  # a bound on a hang: the message is there or lost
            except nats.errors.TimeoutError:
                pytest.fail("a message published after the subscriber's flush was lost")
            assert msg.data == b"x"
