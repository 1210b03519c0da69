"""NATS connection and JetStream resources shared by every service.

Streams and KV buckets are declared here, idempotently, so whichever service starts first
creates them and none depends on another being up.
"""

from __future__ import annotations

import logging

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from . import subjects

__all__ = ["connect", "ensure_audit_dead_stream", "ensure_audit_stream", "kv_bucket", "processed"]

log = logging.getLogger(__name__)


async def connect(url: str, name: str) -> NATS:
    """A connection that keeps retrying forever: services ride out NATS restarts."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats: %s", exc)

    async def on_disconnect() -> None:
        log.warning("nats: disconnected")

    async def on_reconnect() -> None:
        log.info("nats: reconnected")

    return await nats.connect(
        servers=[u.strip() for u in url.split(",") if u.strip()],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        allow_reconnect=True,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        pending_size=64 * 1024 * 1024,
    )


async def kv_bucket(js: JetStreamContext, bucket: str, history: int = 1, ttl: float | None = None) -> KeyValue:
    """The bucket, created if missing (`ttl`: seconds an entry lives after its last write)."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        try:
            return await js.create_key_value(bucket=bucket, history=history, storage=StorageType.FILE, ttl=ttl)
        except Exception:  # another replica created it between our two calls
            return await js.key_value(bucket)


async def _ensure_file_stream(js: JetStreamContext, name: str, subject: str, max_age_days: int) -> None:
    """Create the stream, or bring an existing one to this configuration (idempotent, any replica)."""
    config = StreamConfig(
        name=name,
        subjects=[subject],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=max_age_days * 24 * 3600,
        discard=DiscardPolicy.OLD,
        duplicate_window=120,
    )
    try:
        await js.add_stream(config)
    except Exception:
        await js.update_stream(config)


async def ensure_audit_stream(js: JetStreamContext) -> None:
    """The durable audit stream: file storage, kept until the audit service has written it."""
    await _ensure_file_stream(js, subjects.AUDIT_STREAM, f"{subjects.AUDIT_EVENTS}.>", max_age_days=7)


async def ensure_audit_dead_stream(js: JetStreamContext) -> None:
    """Dead letters of the audit stream: kept 30 days for a human to look at, never replayed."""
    await _ensure_file_stream(js, subjects.AUDIT_DEAD_STREAM, subjects.AUDIT_DEAD, max_age_days=30)


async def processed(nc: NATS) -> None:
    """Return once the server has processed every command `nc` sent before this call.

    nats-py's `flush()` writes its PING straight to the socket, ahead of commands still waiting in
    the client's buffer, so `subscribe(); flush()` can return before the server has the
    subscription (a request from another connection then gets "no responders"). A message to
    ourselves goes through that same buffer, behind everything sent before it. Services call this
    at the end of `start()`, so "started" means "subscribed"."""
    inbox = nc.new_inbox()
    echo = await nc.subscribe(inbox, max_msgs=1)
    await nc.publish(inbox, b"")
    await echo.next_msg(timeout=10)  # bounds a failure only
