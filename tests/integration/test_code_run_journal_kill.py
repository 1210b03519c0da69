"""An ingress replica SIGKILLed while a Code Mode run is out (its script waits for a tool) leaves the run's
audit row, replayed from its journal by the replica that takes its slot: "may have run", naming the
meta-tool, its kind (`code_run`) and the sha256 of its arguments (the script), as a cut tool call's
row names its arguments.

Before, a run was journaled with no route at all: the replayed row named no tool and carried no
digest, so nothing tied it to the script that ran (the failover test counted such a run, answered an
instant before the kill, as a call without its row). No timing thresholds: every wait is on a condition.
"""

from __future__ import annotations

import asyncio

import pytest

from cli.ports import hold_ports
from libs.common.audit.audit_content import sha256_of
from libs.common.audit.audit_journal import STOPPED
from libs.common.contracts.messages import AuditEvent
from libs.common.settings import CodeModeSettings
from tests.support.audit_rows import audit_rows_when
from tests.support.gates import gate_upstream
from tests.support.gateway import default_config, running_gateway
from tests.support.polling import poll_until
from tests.support.replicas import IngressProcess

pytestmark = pytest.mark.integration

CODER_KEY = "bk_test_code_run_journal_kill00"
SCRIPT = {"code": 'gate.hold(name="cut")\n'}


async def test_a_run_cut_with_its_ingress_replica_keeps_a_row_naming_its_script(nats_url, redis_url, tmp_path):
    gates = tmp_path / "gates"
    config = default_config({"gate": gate_upstream(gates)})
    config["keys"].append({"name": "coder", "key": CODER_KEY, "tools": ["gate/*"], "code_mode": True})
    journal = tmp_path / "journal"
    settings = CodeModeSettings(sandbox_workers=1, search_embeddings=False)
    with hold_ports(1) as held:
        async with running_gateway(nats_url, redis_url, tmp_path, config, codemode=settings) as gateway:
            replica = IngressProcess(nats_url, "-r", held.ports[0], env={"BASTION_AUDIT_JOURNAL_DIR": str(journal)})
            replica.start()
            try:
                await poll_until(replica.serving, "the ingress replica to serve", within=60)
                running = asyncio.create_task(replica.call_tool(CODER_KEY, "execute_code", SCRIPT))
                await poll_until((gates / "cut.called").exists, "the script's call to reach the upstream", within=60)
                replica.kill()
                assert (await asyncio.wait_for(running, 30)).startswith("cut"), "the run was answered"
                replica.start()  # the same slot: it replays what the killed process left
                await poll_until(replica.serving, "the restarted replica to serve", within=60)
            finally:
                (gates / "cut.open").touch()  # the script's call ends; its run answers nobody
                replica.stop()

            def replayed(rows: list[AuditEvent]) -> bool:
                return any(r.error == STOPPED for r in rows)

            rows = await audit_rows_when(gateway.nats_url, "coder", replayed)

    (run,) = [r for r in rows if r.error == STOPPED]
    assert (run.kind, run.status, run.execution, run.name) == ("code_run", "error", "may_have_run", "execute_code")
    assert run.tool == "execute_code", "the replayed row names the meta-tool the run was sent to"
    assert run.arguments_sha256 == sha256_of(SCRIPT), "the replayed row names the script that ran"
    assert not list((journal / "-r").glob("*.wal")), "the journal outlived a clean stop"
