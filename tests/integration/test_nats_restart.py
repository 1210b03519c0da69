"""Services ride out a NATS restart: the server is SIGKILLed and started again on the same port with
the same JetStream directory (what `bastion up` does), and KV watches resume at once.

nats-py's own remedy for a watch whose consumer vanished with the server is a missed-heartbeat
check that fires 10-20 s later; until then every change (a revoked key, a new server) is silently
missed. `BucketWatch` re-creates its watch after each reconnect instead.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from cli.stack import EmbeddedNats
from libs.common.bus.kvwatch import BucketWatch
from libs.common.bus.nats import connect
from tests.support.polling import poll_until
from tests.support.restarts import restart_on_same_port

pytestmark = pytest.mark.integration

CHANGE_SEEN_WITHIN = 8.0
"""Bound on waiting for a change made after the restart: under nats-py's heartbeat recovery (10 s
at the earliest), so a watch that is not re-created on reconnect fails here."""


async def test_kv_watch_sees_changes_made_right_after_a_nats_restart(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats").start()
    restarted: subprocess.Popen[bytes] | None = None
    nc = await connect(server.url, "watch-test")
    puts: list[tuple[str, bytes]] = []
    deletes: list[str] = []
    watch = BucketWatch(nc, "restart_test", lambda k, v, _r: puts.append((k, v)), deletes.append)
    try:
        kv = await nc.jetstream().create_key_value(bucket="restart_test")
        await kv.put("kept", b"1")
        await kv.put("revoked", b"1")
        await watch.start()
        await poll_until(lambda: len(puts) == 2, "the initial values", within=5)

        restarted = await asyncio.to_thread(restart_on_same_port, server)
        await poll_until(lambda: nc.is_connected, "the client to reconnect", within=10)
        for _ in range(100):  # JetStream may take a moment to load the stream from disk
            try:
                await kv.delete("revoked")
                await kv.put("added", b"2")
                break
            except Exception:
                await asyncio.sleep(0.1)

        await poll_until(
            lambda: "revoked" in deletes and ("added", b"2") in puts, "the changes", within=CHANGE_SEEN_WITHIN
        )
        assert puts == [("kept", b"1"), ("revoked", b"1"), ("added", b"2")], "re-delivered values are not repeated"
        assert deletes == ["revoked"]
    finally:
        await watch.stop()
        await nc.close()
        if restarted is not None:
            restarted.kill()
            restarted.wait()
        server.stop()
