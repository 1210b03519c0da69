"""Stores a test writes before their owning service runs: declared as that owner would declare them
(`libs.common.bus.stores`), since no other role creates a store."""

from __future__ import annotations

from nats.js import JetStreamContext

from libs.common.bus.stores import STORES, declare
from libs.common.contracts import subjects
from libs.common.settings import StoreSettings

__all__ = ["declared"]


async def declared(js: JetStreamContext, *buckets: str) -> None:
    """Declare the KV buckets (or streams, by stream name) `buckets` with the default settings."""
    for name in buckets:
        stream = name if name in STORES else subjects.kv_stream(name)
        await declare(js, stream, StoreSettings())
