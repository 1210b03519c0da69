"""A codemode replica SIGKILLed while a script waits for a tool loses no audit row: the replica that
takes its slot replays its journal, and the script's call gets exactly one row, "may have run",
still under its run (`parent_id`), naming the server, tool and arguments it was sent with.

No timing thresholds: every wait is on a condition, with a timeout that only bounds a failure.
"""

from __future__ import annotations

import asyncio

import pytest

from libs.common.audit.audit_content import sha256_of
from libs.common.audit.audit_journal import STOPPED
from libs.common.contracts.messages import AuditEvent
from tests.support.audit_rows import audit_rows_when
from tests.support.gates import gate_upstream
from tests.support.gateway import Gateway, default_config, running_gateway
from tests.support.polling import poll_until
from tests.support.replicas import CodeModeProcess

pytestmark = pytest.mark.integration

CODER_KEY = "bk_test_code_mode_journal_kill0"
PROBE_KEY = "bk_test_code_mode_journal_probe"
"""Asks whether the replica serves: its rows stay apart from the runs' (a query returns a page)."""


def _text(result) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


async def _serving(gateway: Gateway) -> bool:
    """The codemode replica answers, and its catalog holds both servers already."""
    try:
        async with gateway.client(PROBE_KEY) as client:
            listed = await client.call_tool("list_tool_files", {})
    except Exception:  # the replica is not taking calls yet
        return False
    return not listed.is_error and {"servers/echo.py", "servers/gate.py"} <= set(_text(listed).split())


async def _run(gateway: Gateway, code: str) -> str:
    try:
        async with gateway.client(CODER_KEY) as client:
            return _text(await client.call_tool("execute_code", {"code": code}))
    except Exception as exc:  # the replica died under the run: the agent gets an error, or nothing
        return f"failed: {type(exc).__name__}"


async def test_a_killed_codemode_loses_no_audit_row_of_a_scripts_tool_call(nats_url, redis_url, tmp_path):
    gates = tmp_path / "gates"
    config = default_config({"gate": gate_upstream(gates)})
    config["keys"] += [
        {"name": name, "key": key, "tools": ["echo/*", "gate/*"], "code_mode": True}
        for name, key in (("coder", CODER_KEY), ("prober", PROBE_KEY))
    ]
    journal = tmp_path / "journal"
    async with running_gateway(nats_url, redis_url, tmp_path, config) as gateway:
        replica = CodeModeProcess(nats_url, "cm-1", env={"BASTION_AUDIT_JOURNAL_DIR": str(journal)})
        replica.start()
        try:
            await poll_until(lambda: _serving(gateway), "the codemode replica to serve", within=90)
            running = asyncio.create_task(_run(gateway, 'gate.hold(name="cut")\n'))
            await poll_until((gates / "cut.called").exists, "the script's call to reach the upstream", within=30)
            replica.kill()
            assert "passed" not in await asyncio.wait_for(running, 60), "the run was answered"
            replica.start()  # the same slot: it replays what the killed process left
            await poll_until(lambda: _serving(gateway), "the restarted replica to serve", within=90)
            # a run after the restart: its row comes after the replayed one on codemode's chain
            assert "later" in await _run(gateway, 'print(echo.echo(text="later"))\n')
        finally:
            (gates / "cut.open").touch()  # the upstream call, nobody's any more, ends
            replica.stop()

        def both_runs_audited(rows: list[AuditEvent]) -> bool:
            return {"gate__hold", "echo__echo"} <= {r.name for r in rows if r.parent_id} and (
                len([r for r in rows if r.kind == "code_run"]) == 2
            )

        rows = await audit_rows_when(gateway.nats_url, "coder", both_runs_audited)

    (cut_row,) = [r for r in rows if r.name == "gate__hold"]  # exactly one row for the cut call
    (cut_run,) = [r for r in rows if r.kind == "code_run" and r.status == "error"]
    assert cut_row.parent_id == cut_run.event_id, "the replayed row lost its run"
    assert (cut_row.status, cut_row.execution, cut_row.error) == ("error", "may_have_run", STOPPED)
    assert (cut_row.kind, cut_row.key_name, cut_row.server, cut_row.tool) == (
        "tool_call",
        "coder",
        "gate",
        "hold",
    )
    assert cut_row.arguments_sha256 == sha256_of({"name": "cut"})
    assert not list((journal / "cm-1").glob("*.wal")), "the journal outlived a clean stop"
