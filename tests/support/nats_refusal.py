"""Expect NATS to refuse a connection, without leaking the refused socket.

nats-py raises a refused first connect (`allow_reconnect=False`) before its own cleanup, leaving the
transport open; it would be reported, unraisably, in whichever later test the garbage collector
happens to run in. Closing the client here releases it where the refusal happens.
"""

from __future__ import annotations

from typing import Any

import nats.errors
from nats.aio.client import Client as NATS

__all__ = ["refusal"]


async def _quiet(_exc: Exception) -> None:
    return None


async def refusal(url: str, **options: Any) -> nats.errors.Error:
    """The error with which the server at `url` refuses a client with these `nats.connect` options;
    `AssertionError` if it accepts it."""
    options.setdefault("error_cb", _quiet)
    nc = NATS()
    try:
        await nc.connect(url, allow_reconnect=False, max_reconnect_attempts=0, **options)
    except nats.errors.Error as exc:
        return exc
    finally:
        await nc.close()
    raise AssertionError(f"NATS at {url} accepted a connection it should refuse")
