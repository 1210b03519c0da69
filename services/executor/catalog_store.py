"""Writing one server's entry in KV `bastion_catalog` when several executor replicas serve it.

Every replica connects to every configured server and publishes its own view, so the entry is
last-writer-wins. A "ready" is always written. An "unavailable" is not written over a "ready" that
another replica (another `publisher`) refreshed within `fresh_for` seconds: that server works
from there, and hiding its tools because this replica cannot reach it (a slow stdio child on a
loaded host, a network split) would fail every call routed to the replica that can. The "ready" of
a replica that died stops being refreshed and ages out; then the "unavailable" lands.
Compare-and-set makes the check and the write one step: a "ready" written in between wins.
"""

from __future__ import annotations

import time

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from libs.common.contracts.messages import ServerCatalog

__all__ = ["write_entry"]

_RACES = 8
"""Compare-and-set attempts before giving up (each lost one means another replica just wrote)."""


async def write_entry(kv: KeyValue, entry: ServerCatalog, fresh_for: float) -> str | None:
    """Write `entry`; None when written, else the publisher whose fresh "ready" was left in place."""
    data = entry.model_dump_json().encode()
    if entry.status == "ready":
        await kv.put(entry.server, data)
        return None
    for _ in range(_RACES):
        try:
            current = await kv.get(entry.server)
        except KeyNotFoundError:
            try:
                await kv.create(entry.server, data)
                return None
            except KeyWrongLastSequenceError:
                continue
        serving = _served_elsewhere(current.value, entry.publisher, fresh_for)
        if serving is not None:
            return serving
        try:
            await kv.update(entry.server, data, last=current.revision)
            return None
        except KeyWrongLastSequenceError:
            continue
    raise KeyWrongLastSequenceError(description=f"catalog {entry.server!r} kept changing under the write")


def _served_elsewhere(value: bytes | None, publisher: str | None, fresh_for: float) -> str | None:
    """Who serves the server, when `value` is another publisher's "ready" refreshed within `fresh_for`."""
    if not value:
        return None
    try:
        held = ServerCatalog.model_validate_json(value)
    except ValueError:
        return None  # unreadable: ours replaces it
    if held.status != "ready" or held.publisher == publisher:
        return None
    if time.time() - held.updated_at > fresh_for:
        return None
    return held.publisher or "an executor that does not name itself"
