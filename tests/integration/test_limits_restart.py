"""Budgets and rate limits ride out a Valkey restart (SIGKILL, then the same port and data dir, as
`bastion up` does): calls fail closed while it is away, and once it is back at most one call fails
on a connection that died with the old server, not one per pooled connection."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path

from redis.exceptions import RedisError

from cli.stack import EmbeddedValkey
from libs.common.entities import Budget, RateLimit
from services.policy.limits import Charged, LimitEngine, plan_for
from tests.support.restarts import restart_on_same_port

CONCURRENT = 8
"""Calls decided at once before the restart: the pool then holds this many connections."""


def _pongs(sock: socket.socket) -> bool:
    sock.sendall(b"PING\r\n")
    return sock.recv(16).startswith(b"+PONG")


async def test_after_a_valkey_restart_at_most_one_call_fails_and_budgets_survive(tmp_path: Path) -> None:
    server = EmbeddedValkey(tmp_path / "valkey").start()
    restarted: subprocess.Popen[bytes] | None = None
    engine = LimitEngine.from_url(server.url)
    plan = plan_for(0.01, [("key:restart", Budget(limit_usd=100.0))], [("key:restart", RateLimit(requests=10**6))])
    now = time.time()
    try:
        charged = await asyncio.gather(*(engine.check_and_charge(plan, now) for _ in range(CONCURRENT)))
        assert all(isinstance(c, Charged) for c in charged)
        spent_before = await engine.spent("key:restart", Budget(limit_usd=100.0), now)

        restarted = await asyncio.to_thread(restart_on_same_port, server, _pongs)
        failures = 0
        for _ in range(CONCURRENT + 1):  # one at a time: each takes the next pooled connection
            try:
                assert isinstance(await engine.check_and_charge(plan, now), Charged)
                break
            except RedisError:
                failures += 1
        assert failures <= 1, f"{failures} calls failed after Valkey was back"
        spent_after = await engine.spent("key:restart", Budget(limit_usd=100.0), now)
        assert spent_after == spent_before + 10_000, "the append-only file kept every charge"
    finally:
        await engine.redis.aclose()
        if restarted is not None:
            restarted.kill()
            restarted.wait()
        server.stop()
