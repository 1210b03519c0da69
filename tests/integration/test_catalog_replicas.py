"""Two executor replicas share one catalog entry per server: one that cannot reach a server must not
hide it while another serves it (failover), and must report it once nobody does.

Real NATS, two in-process executors; every wait is on a condition, no assertion is about timing."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.common.settings import ExecutorSettings
from services.executor.service import ExecutorService
from tests.integration.test_executor import Harness, harness, stdio
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration
__all__ = ["harness"]  # the fixture, re-exported for pytest

REFUSING = str(Path(__file__).resolve().parents[2] / "tests" / "support" / "refusing_server.py")


def _settings(nats_url: str, instance: str) -> ExecutorSettings:
    return ExecutorSettings(
        nats_url=nats_url,
        instance=instance,
        connect_timeout=15.0,
        reconnect_max_backoff=0.2,
        health_interval=60,
        catalog_heartbeat=2.0,
    )


async def test_a_replica_that_cannot_connect_keeps_the_ready_of_another(
    harness: Harness, nats_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "refuse"
    await harness.configure("s", stdio(REFUSING, env={"REFUSE_WHILE": str(marker)}, sandbox={"read": [str(tmp_path)]}))
    a = ExecutorService(_settings(nats_url, "a"))
    b = ExecutorService(_settings(nats_url, "b"))
    await a.start()
    try:
        ready = await harness.wait_status("s", "ready")
        assert ready.publisher == a.publisher
        assert {t.tool for t in ready.tools} >= {"echo", "add"}
        marker.write_text("")  # from now on the server refuses every new connection: b's
        await b.start()
        await poll_until(lambda: "s" in b.upstreams and b.upstreams["s"].connects >= 2, "b to fail twice")
        entry = await harness.entry("s")
        assert entry is not None and entry.status == "ready", entry
        assert entry.publisher == a.publisher
        assert {t.tool for t in entry.tools} == {t.tool for t in ready.tools}
    finally:
        await a.stop()
    # a's "ready" is no longer refreshed: once it ages out, b's failure is what the catalog says
    down = await harness.wait_status("s", "unavailable")
    try:
        assert down.publisher == b.publisher and down.tools == []
        assert any("refusing" in line for line in down.stderr_tail), down
    finally:
        await b.stop()
