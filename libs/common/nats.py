"""NATS connection and JetStream resources shared by every service.

Streams and buckets are declared by their owners (`libs.common.stores`); here, every service opens them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from . import local_lane, subjects

if TYPE_CHECKING:
    from .settings import ServiceSettings

__all__ = [
    "connect",
    "connect_service",
    "credentials",
    "drain_or_close",
    "kv_bucket",
    "kv_names",
    "kv_snapshot",
    "processed",
]

log = logging.getLogger(__name__)


async def connect(url: str, name: str, *, role: str | None = None, nkey_seed_file: str = "") -> NATS:
    """A connection that keeps retrying forever, from the first connect on: services ride out NATS
    restarts, and one started while NATS is down waits for it.

    `role` (`libs.common.permissions`) names the reply subjects (`_INBOX.<role>.…`) the role is
    allowed to read; `nkey_seed_file` is that role's NKey seed. Without a seed the connection is
    anonymous, which only an open nats-server (a test fixture) accepts."""

    async def on_error(exc: Exception) -> None:
        if "permissions violation" in str(exc).lower():  # a bug: the permissions table misses what the code does
            log.error("nats: the bus refused role %r: %s (libs/common/permissions.py)", role, exc)
        else:
            log.warning("nats: %s", exc)

    async def on_disconnect() -> None:
        log.warning("nats: disconnected")

    async def on_reconnect() -> None:
        log.info("nats: reconnected")

    nc = local_lane.new_client()
    nc.role = role or ""
    await nc.connect(
        servers=[u.strip() for u in url.split(",") if u.strip()],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,  # type: ignore[arg-type]  # annotated int; any float is slept
        connect_timeout=5,
        allow_reconnect=True,
        error_cb=nc.reporting(on_error),
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        pending_size=64 * 1024 * 1024,
        # a hung (not dead) server is noticed within a minute, not the four of nats-py's defaults
        ping_interval=20,
        max_outstanding_pings=3,
        **credentials(role, nkey_seed_file),
    )
    return nc


async def connect_service(settings: ServiceSettings, *, role: str, name: str) -> NATS:
    """A service's connection as bus role `role`, to the servers and with the seed its settings name."""
    return await connect(settings.nats_url, name, role=role, nkey_seed_file=settings.nats_nkey_seed_file)


async def drain_or_close(nc: NATS) -> None:
    """End `nc` for good: drained (subscriptions finish their messages, buffered publishes go out)
    while NATS is there, closed in any case.

    nats-py drains no connection that is reconnecting (NATS down or restarting) and can fail half
    way through a drain; either way the connection stays open and, with `connect`'s unlimited
    reconnects, keeps reconnecting forever. Every service's `stop()` ends its connections here."""
    if nc.is_closed:
        return
    try:
        if nc.is_connected:
            await nc.drain()
    except Exception as exc:  # NATS went away: what was not flushed is lost (acks: redeliveries)
        log.warning("nats: could not drain the connection (%r); closing it", exc)
    finally:
        # a no-op after a drain; else the client ends closed even if this raises (on a buffer it
        # cannot flush into the dead socket)
        with contextlib.suppress(Exception):
            await nc.close()


def credentials(role: str | None, nkey_seed_file: str = "") -> dict[str, Any]:
    """`nats.connect` options for `role` with the NKey seed in `nkey_seed_file` (if any)."""
    options: dict[str, Any] = {}
    if role:
        options["inbox_prefix"] = subjects.inbox_prefix(role)
    if nkey_seed_file:
        if not os.path.isfile(nkey_seed_file):
            raise FileNotFoundError(f"NATS NKey seed file {nkey_seed_file!r} does not exist")
        options["nkeys_seed"] = nkey_seed_file
    return options


async def kv_bucket(js: JetStreamContext, bucket: str) -> KeyValue:
    """The bucket's handle. Only its owner creates it (`libs.common.stores.declare_owned`); one it
    has not created yet reads as empty (a `get` finds no key) until it has, and a write fails."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        log.warning("KV bucket %s does not exist yet: it reads as empty until its owner creates it", bucket)
        # through the stream's API (not direct gets, which only an existing stream answers): a
        # missing stream answers "not found", which nats-py reports as a missing key
        return KeyValue(
            name=bucket, stream=subjects.kv_stream(bucket), pre=f"{subjects.KV_ROOT}.{bucket}.", js=js, direct=False
        )


async def kv_names(js: JetStreamContext, bucket: str) -> list[str]:
    """The keys that currently hold a value in `bucket`.

    Read from the stream's per-subject state, not `KeyValue.keys()`: nats-py's watcher decides
    "nothing pending" from a consumer-info call that races the first deliveries, so under load
    `keys()` can answer an empty list for a full bucket. A key whose last write is a delete or
    purge marker still has a subject; the caller's `get` raises `KeyNotFoundError` for it.
    """
    prefix = f"{subjects.KV_ROOT}.{bucket}."
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}>")
    return sorted(subject[len(prefix) :] for subject in info.state.subjects or {})


async def kv_keys(kv: KeyValue) -> list[str]:
    """`kv_names` for a bucket handle, where only the handle is at hand. nats-py keeps the context and
    bucket name a handle was made from in private attributes (`KeyValue.__init__`, stable across 2.x,
    which pyproject pins); reading them beats `kv.keys()`, whose race `kv_names` explains."""
    return await kv_names(kv._js, kv._name)


async def kv_snapshot(js: JetStreamContext, bucket: str) -> dict[str, KeyValue.Entry]:
    """Every live entry of `bucket` (see `kv_names`); keys deleted between listing and reading are left out."""
    kv = await js.key_value(bucket)
    entries: dict[str, KeyValue.Entry] = {}
    for name in await kv_names(js, bucket):
        try:
            entries[name] = await kv.get(name)
        except KeyNotFoundError:
            continue
    return entries


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
