"""A service's NATS connection ends for good when it is stopped while NATS is down: closed, with no
reconnect loop left running (libs.common.bus.nats.drain_or_close).

Against a real nats-server, stopped under clients that reconnect without limit, as every service's
do. Closed at moments spread over their reconnect attempts, about one in four kept reconnecting
after nats-py's own close() (Python 3.11's wait_for loses a cancel that lands as a connect fails)."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from cli.stack import EmbeddedNats
from libs.common.bus.nats import drain_or_close

pytestmark = pytest.mark.integration

CLIENTS = 60


def _still_running(client: NATS) -> bool:
    loop = client._reconnection_task
    return not client.is_closed or (loop is not None and not loop.done())


async def test_clients_closed_while_nats_is_down_stop_reconnecting(nats_server: EmbeddedNats) -> None:
    clients = [
        await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.01, connect_timeout=1)
        for _ in range(CLIENTS)
    ]
    nats_server.stop()
    await asyncio.sleep(0.3)  # every client in its reconnect loop

    async def close_later(client: NATS, index: int) -> None:
        await asyncio.sleep(index * 0.005)  # spread over the loop's attempts
        await drain_or_close(client)

    try:
        await asyncio.gather(*(close_later(client, i) for i, client in enumerate(clients)))
        await asyncio.sleep(0.3)  # a loop that lost its cancel would have marked its client open again
        assert [i for i, client in enumerate(clients) if _still_running(client)] == []
    finally:
        for client in clients:
            if client._reconnection_task is not None:
                client._reconnection_task.cancel()
        nats_server.start()


async def test_a_connected_client_is_drained_and_closed(nats_server: EmbeddedNats) -> None:
    client = await nats.connect(nats_server.url)
    received: list[bytes] = []

    async def keep(msg: Msg) -> None:
        received.append(msg.data)

    await client.subscribe("close.test", cb=keep)
    await client.publish("close.test", b"before the drain")
    await drain_or_close(client)
    assert client.is_closed and not _still_running(client)
    assert received == [b"before the drain"]  # drained: the message in flight was handled
