"""NATS connection and JetStream resources shared by every service.

Streams and buckets are declared by their owners (`libs.common.bus.stores`); here, every service opens them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client as NATS
from nats.aio.client import ReconnectToServerHandler, Server
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, InvalidKeyError, KeyNotFoundError
from nats.js.kv import KeyValue

from libs.common.bus import local_lane
from libs.common.bus.bus_client import BusClient
from libs.common.bus.permissions import CALL_HOLDERS
from libs.common.contracts import subjects
from libs.common.contracts.messages_routed import BusMoved

if TYPE_CHECKING:
    from libs.common.settings import ServiceSettings

__all__ = [
    "Liveness",
    "connect",
    "connect_service",
    "credentials",
    "drain_or_close",
    "kv_bucket",
    "kv_entries",
    "kv_keys",
    "kv_names",
    "kv_snapshot",
    "processed",
    "servers",
]

log = logging.getLogger(__name__)


def servers(url: str) -> list[str]:
    """The server URLs of a `BASTION_NATS_URL`-style list (`nats://a:4222,nats://b:4222`), for nats-py.

    Which reads one string as one server and refuses a list in it."""
    found = [u.strip() for u in url.split(",") if u.strip()]
    if not found:
        raise ValueError(f"no NATS server in {url!r}: expected nats://host:port[,nats://host:port...]")
    return found


@dataclass(frozen=True)
class Liveness:
    """How soon a member that stops answering is left (`ServiceSettings.nats_*`, docs/configuration.md)."""

    ping_interval: float = 1.0
    max_outstanding_pings: int = 2
    timeout_streak: int = 3
    connect_timeout: float = 2.0


def _another_member(nc: BusClient, wait: float) -> ReconnectToServerHandler:
    """nats-py's reconnect picks a shuffled server, often the one that just stopped answering.

    (Its TCP port still accepts, so only the connect timeout tells). This picks the members tried least
    since they last answered, the one just left last, at random among equals; it waits `wait` seconds
    only once every member has failed since."""

    def choose(pool: list[Server], _info: dict[str, Any]) -> tuple[Server | None, float]:
        ranked = sorted(pool, key=lambda s: (s.reconnects, s.uri.netloc == nc.left, random.random()))
        if not ranked:
            return None, wait
        return ranked[0], wait if ranked[0].reconnects else 0.0

    return choose


async def connect(
    url: str, name: str, *, role: str | None = None, nkey_seed_file: str = "", liveness: Liveness | None = None
) -> NATS:
    """A connection that keeps retrying forever, from the first connect on.

    Services ride out NATS restarts, and one started while NATS is down waits for it.

    `role` (`libs.common.bus.permissions`) names the reply subjects (`_INBOX.<role>.…`) the role is
    allowed to read; `nkey_seed_file` is that role's NKey seed. Without a seed the connection is
    anonymous, which only an open nats-server (a test fixture) accepts. `liveness` says how soon a
    member that stops answering (a paused or hung nats-server) is left for another."""
    live = liveness or Liveness()

    async def on_error(exc: Exception) -> None:
        if "permissions violation" in str(exc).lower():  # a bug: the permissions table misses what the code does
            log.error("nats: the bus refused role %r: %s (libs/common/bus/permissions.py)", role, exc)
        else:
            log.warning("nats: %s", exc)

    async def on_disconnect() -> None:
        nc.left = nc._current_server.uri.netloc if nc._current_server else ""
        log.warning("nats: disconnected from %s", nc.left or "the server")

    async def on_reconnect() -> None:
        nc.moved()
        log.info("nats: reconnected to %s", nc.connected_url.netloc if nc.connected_url else "a server")
        if nc.role in CALL_HOLDERS:
            await _announce_move(nc)

    nc = local_lane.new_client()
    nc.role = role or ""
    nc.timeout_streak, nc.ping_wait = live.timeout_streak, live.connect_timeout
    await nc.connect(
        servers=servers(url),
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,  # type: ignore[arg-type]  # annotated int; any float is slept
        reconnect_to_server_handler=_another_member(nc, 0.5),
        connect_timeout=live.connect_timeout,  # type: ignore[arg-type]  # annotated int; a float is waited
        allow_reconnect=True,
        error_cb=nc.reporting(on_error),
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        pending_size=64 * 1024 * 1024,
        # a hung (not dead) server is left after about interval x (max + 1) seconds
        ping_interval=live.ping_interval,  # type: ignore[arg-type]  # annotated int; a float is slept
        max_outstanding_pings=live.max_outstanding_pings,
        **credentials(role, nkey_seed_file),
    )
    return nc


async def _announce_move(nc: BusClient) -> None:
    """Tell the requesters this replica is back on another member (`subjects.BUS_MOVED`).

    The calls they sent it while its subscriptions were on the member it lost are likely lost there, and
    would otherwise fail only after their acknowledgement grace (`libs.common.bus.relay`)."""
    with contextlib.suppress(Exception):  # gone again already: its next reconnect says it
        await nc.publish(subjects.BUS_MOVED, BusMoved(role=nc.role, left=nc.left).model_dump_json().encode())


async def connect_service(settings: ServiceSettings, *, role: str, name: str) -> NATS:
    """A service's connection as bus role `role`, to the servers and with the seed its settings name."""
    liveness = Liveness(
        ping_interval=settings.nats_ping_interval,
        max_outstanding_pings=settings.nats_max_outstanding_pings,
        timeout_streak=settings.nats_timeout_streak,
        connect_timeout=settings.nats_connect_timeout,
    )
    return await connect(
        settings.nats_url, name, role=role, nkey_seed_file=settings.nats_nkey_seed_file, liveness=liveness
    )


async def drain_or_close(nc: NATS) -> None:
    """End `nc` for good.

    Drained (subscriptions finish their messages, buffered publishes go out) while NATS is there, closed
    in any case.

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
        await _closed_for_good(nc)


_CLOSE_ROUNDS = 5
_LOOP_END_WAIT = 2.0
"""Seconds a reconnect loop cancelled again may take to end."""


async def _closed_for_good(nc: NATS) -> None:
    """Close `nc` (a no-op after a drain) and make sure its reconnect loop has ended.

    `close()` cancels nats-py's reconnect loop, but on Python 3.11 `asyncio.wait_for` loses a cancel
    that lands just as the connect it waits on fails: the loop carries on, marks the client
    reconnecting again after `close()` marked it closed, and reconnects for ever (1 client in 4
    closed while NATS is down, tests/integration/test_nats_close.py). So the loop is cancelled
    again until it has ended, and the client closed once more: a loop that got back in marked it
    open. Any error of a close (a buffer it cannot flush into the dead socket) is no reason to
    leave it open."""
    for _ in range(_CLOSE_ROUNDS):
        with contextlib.suppress(Exception):
            await nc.close()
        loop = nc._reconnection_task  # nats-py keeps no public handle on its reconnect loop
        if loop is None or loop.done():
            if nc.is_closed:
                return
            continue
        loop.cancel()
        await asyncio.wait({loop}, timeout=_LOOP_END_WAIT)
    log.warning("nats: the connection's reconnect loop outlived %d closes", _CLOSE_ROUNDS)


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
    """The bucket's handle.

    Only its owner creates it (`libs.common.bus.stores.declare_owned`); one it has not created yet reads
    as empty (a `get` finds no key) until it has, and a write fails."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        log.warning("KV bucket %s does not exist yet: it reads as empty until its owner creates it", bucket)
        # through the stream's API (not direct gets, which only an existing stream answers): a
        # missing stream answers "not found", which nats-py reports as a missing key
        return KeyValue(
            name=bucket, stream=subjects.kv_stream(bucket), pre=f"{subjects.KV_ROOT}.{bucket}.", js=js, direct=False
        )


async def kv_names(js: JetStreamContext, bucket: str, under: str = "") -> list[str]:
    """The keys written in `bucket` (those starting with `under`, a prefix ending in a dot).

    Read from the stream's per-subject state, not `KeyValue.keys()` or a watch: nats-py's watcher
    decides "nothing pending" from a consumer-info call that races the first deliveries, so under
    load it can answer an empty list for a full bucket. A key whose last write is a delete or purge
    marker still has a subject; the caller's `get` raises `KeyNotFoundError` for it.
    """
    prefix = f"{subjects.KV_ROOT}.{bucket}."
    asked = f"{js._prefix}.STREAM.INFO.{subjects.kv_stream(bucket)}"
    names: set[str] = set()
    while True:
        # page by page: the server sends 100,000 subjects a page, and nats-py's `stream_info` reads
        # only the first (a bucket past that would lose keys from every listing, silently)
        request = json.dumps({"subjects_filter": f"{prefix}{under}>", "offset": len(names)}).encode()
        page = await js._api_request(asked, request, timeout=js._timeout)
        found = (page.get("state") or {}).get("subjects") or {}
        before = len(names)
        names.update(subject[len(prefix) :] for subject in found)
        if len(names) == before or len(names) >= page.get("total", 0):
            return sorted(names)


async def kv_keys(kv: KeyValue, under: str = "") -> list[str]:
    """`kv_names` for a bucket handle.

    Where only the handle is at hand. nats-py keeps the context and bucket name a handle was made from in
    private attributes (`KeyValue.__init__`, stable across 2.x, which pyproject pins); reading them beats
    `kv.keys()`, whose race `kv_names` explains."""
    return await kv_names(kv._js, kv._name, under)


KV_READS_IN_FLIGHT = 32
"""Reads `kv_entries` keeps waiting at once: a round trip each, overlapped (one after another, 10,000
records took 2.9 s here; the server answers them in parallel)."""


async def kv_entries(kv: KeyValue, names: list[str]) -> dict[str, KeyValue.Entry]:
    """The current entry of each of `names` that holds a value, in their order (deleted ones left out)."""
    found: list[KeyValue.Entry | None] = [None] * len(names)
    next_index = iter(range(len(names)))

    async def reader() -> None:
        for i in next_index:  # shared: each reader takes the next name not taken yet
            try:
                found[i] = await kv.get(names[i])
            except (KeyNotFoundError, InvalidKeyError):  # deleted meanwhile; a subject no key can name
                continue

    await asyncio.gather(*(reader() for _ in range(min(KV_READS_IN_FLIGHT, len(names)))))
    return {name: entry for name, entry in zip(names, found, strict=True) if entry is not None}


async def kv_snapshot(js: JetStreamContext, bucket: str) -> dict[str, KeyValue.Entry]:
    """Every live entry of `bucket` (see `kv_names`); keys deleted between listing and reading are left out."""
    return await kv_entries(await js.key_value(bucket), await kv_names(js, bucket))


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
