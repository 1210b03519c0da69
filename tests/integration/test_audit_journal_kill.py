"""An ingress replica SIGKILLed mid-load loses no audit event: the one that takes its slot replays
its journal. Every answered call has its row, and so has every call cut by the kill that reached
the handler, a call surely in flight among them (as "may have run").

No timing thresholds: every wait is on a condition, with a timeout that only bounds a failure.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from cli.ports import hold_ports
from libs.common.audit.audit_content import sha256_of
from libs.common.audit.audit_journal import STOPPED
from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditQuery, AuditRows
from tests.support.fault_load import Load
from tests.support.gateway import ADMIN_KEY, default_config, running_gateway
from tests.support.polling import poll_until
from tests.support.replicas import IngressProcess

pytestmark = pytest.mark.integration

LEDGER_SERVER = Path(__file__).parents[1] / "support" / "ledger_server.py"
AUDITED = {"ledger__record", "echo__sleep"}


async def _rows(nc: NATS) -> list:
    query = AuditQuery(limit=1000, key_name="admin").model_dump_json().encode()
    answer = AuditRows.model_validate_json((await nc.request(subjects.AUDIT_QUERY, query, timeout=10)).data)
    assert answer.error is None, answer.error
    return [row for row in answer.rows if row.name in AUDITED]


async def test_a_killed_ingress_loses_no_audit_event(nats_url, redis_url, tmp_path):
    ledger = tmp_path / "ledger.txt"
    servers = {"ledger": {"command": sys.executable, "args": [str(LEDGER_SERVER)], "env": {"LEDGER_FILE": str(ledger)}}}
    servers["ledger"]["sandbox"] = {"write": [str(tmp_path)]}
    journal = tmp_path / "journal"
    raw = default_config(servers)
    raw["customers"] = [{"id": "acme", "name": "Acme"}]
    raw["teams"] = [{"id": "ops", "name": "Ops", "customer_id": "acme"}]
    raw["users"] = [{"id": "ann", "name": "Ann", "team_id": "ops"}]
    raw["keys"][0] |= {"user": "ann", "team": "ops", "customer": "acme"}  # the admin key, which the load uses
    # the replica's port, no one else's while it starts and after it is killed (`cli.ports`)
    with hold_ports(1) as held:
        async with running_gateway(nats_url, redis_url, tmp_path, raw_config=raw):
            replica = IngressProcess(nats_url, "-k", held.ports[0], env={"BASTION_AUDIT_JOURNAL_DIR": str(journal)})
            replica.start()
            nc = await connect(nats_url, "test-journal")
            load = Load(replica.url, ADMIN_KEY, prefix="kill", workers=3, max_answered=600)
            try:
                await poll_until(replica.serving, "the ingress replica to serve", within=60)
                running = asyncio.create_task(load.run())
                sleeper = asyncio.create_task(replica.call_tool(ADMIN_KEY, "echo__sleep", {"seconds": 60}))
                await load.wait_for_ok(0.0, 30, within=60)
                await poll_until(
                    lambda: any(b'"echo__sleep"' in p.read_bytes() for p in (journal / "-k").glob("*.wal")),
                    "the sleep call to reach its handler",
                )
                replica.kill()
                assert (await asyncio.wait_for(sleeper, 30)).startswith("cut"), "the sleep call was answered"
                replica.start()  # the same slot: it replays what the killed process left
                await poll_until(replica.serving, "the restarted replica to serve", within=60)
                await load.wait_for_ok(load.results[-1].started, 20, within=60)
            finally:
                load.stop()
                await running
                replica.stop()

            ran = set(ledger.read_text().split())
            answered = [r for r in load.results if r.answered]
            cut = [r for r in load.results if not r.answered]
            cut_and_ran = [r for r in cut if r.token in ran]
            want = len(answered) + len(cut_and_ran) + 1  # + the sleep call
            rows = await poll_until(lambda: _rows_if(nc, want), f"{want} audit rows", within=60)
            await nc.close()

        assert len(rows) <= len(load.results) + 1, "an audit row for a call that never reached a handler"
        (sleep_row,) = [row for row in rows if row.name == "echo__sleep"]
        assert (sleep_row.status, sleep_row.execution, sleep_row.error) == ("error", "may_have_run", STOPPED)
        assert (sleep_row.user_id, sleep_row.team_id, sleep_row.customer_id) == ("ann", "ops", "acme")
        # what it was sent to and with: queries by server or tool find the calls of unknown outcome
        assert (sleep_row.server, sleep_row.tool) == ("echo", "sleep")
        assert sleep_row.arguments_sha256 == sha256_of({"seconds": 60})
        assert not list((journal / "-k").glob("*.wal")), "the journal outlived a clean stop"


async def _rows_if(nc: NATS, want: int) -> list | None:
    rows = await _rows(nc)
    return rows if len(rows) >= want else None
