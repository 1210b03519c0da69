"""Two fresh `BusClient` connections, one to publish and one to receive, for the tests that check what
arrives at the other end of a real NATS."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from libs.common.bus.bus_client import BusClient


@contextlib.asynccontextmanager
async def sender_and_receiver(nats_url: str) -> AsyncIterator[tuple[BusClient, BusClient]]:
    """A sender and a receiver connected to `nats_url`, both closed after the block."""
    sender, receiver = BusClient(), BusClient()
    await sender.connect(nats_url)
    await receiver.connect(nats_url)
    try:
        yield sender, receiver
    finally:
        await sender.close()
        await receiver.close()
