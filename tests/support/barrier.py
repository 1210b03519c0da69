"""A reliable "the server has processed everything this connection sent" for tests.

nats-py 2.16's `flush()` writes its PING straight to the socket, ahead of commands still waiting
in the client's buffer, so `subscribe(); flush()` can return before the server has the
subscription (a request from another connection then gets "no responders", a few times in a
hundred). A message to ourselves goes through that same buffer, behind everything sent before it.
"""

from __future__ import annotations

from nats.aio.client import Client as NATS

__all__ = ["processed"]


async def processed(nc: NATS) -> None:
    """Return once the server has processed every command `nc` sent before this call."""
    inbox = nc.new_inbox()
    echo = await nc.subscribe(inbox, max_msgs=1)
    await nc.publish(inbox, b"")
    await echo.next_msg(timeout=10)  # bounds a failure only
