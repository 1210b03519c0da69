"""The tool supply chain through the whole gateway, with a real upstream that changes its own tool
definitions after they were trusted (`tests/support/drifting_server.py`, driven by a file): each
mutation kind is quarantined within one refresh with 0 calls reaching the changed definition, a
person sees the diff and approves (callable again) or rejects (stays quarantined) with the `bastion
tools` commands, each decision an audit event naming who."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError
from typer.testing import CliRunner

from cli.main import app
from libs.common.bus.nats import connect, kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent, ToolCall, decode_outcome
from libs.common.contracts.messages_base import Caller
from libs.common.contracts.pins import PinDrift
from libs.common.supply_chain.pin_store import find, read_records
from libs.common.supply_chain.pin_store import pending as pending_records
from services.executor.interceptors import PinningInterceptor
from services.executor.service import ExecutorService
from tests.support.admin_api import principal_token, running_admin
from tests.support.audit_rows import kind_rows_when
from tests.support.gateway import ADMIN_KEY, READONLY_KEY, ROOT, Gateway, default_config, running_gateway
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

DRIFTING = ROOT / "tests" / "support" / "drifting_server.py"
PRINCIPAL = "ana@example.com"


def drifting_config(state: Path, calls: Path) -> dict[str, Any]:
    """The default keys with the drifting server alone: no test here calls echo or notes, and each of
    those stdio servers costs a gateway start over a second of CPU."""
    config = default_config()
    config["mcpServers"] = {
        "drift": {
            "command": sys.executable,
            "args": [str(DRIFTING), str(state), str(calls)],
            "sandbox": {"write": [str(calls.parent)]},
        }
    }
    return config


def _pinning(gateway: Gateway) -> PinningInterceptor:
    executor = next(s for s in gateway.services if isinstance(s, ExecutorService))
    return next(i for i in executor.interceptors.interceptors if isinstance(i, PinningInterceptor))


def _listed(gateway: Gateway, tool: str) -> bool:
    status = gateway.ingress.catalog.server_status("drift")
    return status is not None and status.status == "ready" and any(t.tool == tool for t in status.tools)


def _calls(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def _routed_call(gateway: Gateway, tool: str) -> Any:
    """A call sent by name as policy sends it (from a replica whose catalog has not caught up yet)."""
    call = ToolCall(
        caller=Caller(key_id="k", key_name="admin"),
        server="drift",
        tool=tool,
        name=f"drift__{tool}",
        arguments={"a": 1, "b": 2, "note": "n"},
        timeout=20,
    )
    nc = await connect(gateway.nats_url, "test-routed")
    try:
        reply = await nc.request(subjects.EXEC_CALL, call.model_dump_json().encode(), timeout=25)
    finally:
        await nc.close()
    return decode_outcome(reply.data)


async def _cli(*args: str) -> Any:
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, app, list(args), env={"BASTION_PRINCIPAL": PRINCIPAL})


# (variant, the name it is listed under, the reason, what the diff calls out)
MUTATIONS = [
    ("description", "add", "changed", "description changed"),
    ("rename", "sum", "renamed", "a renamed copy of 'add'"),
    ("property", "add", "changed", "property 'note' added"),
    ("default", "add", "changed", "default of 'retries' changed: 3 -> 0"),
]


@pytest.mark.parametrize(("variant", "name", "reason", "called_out"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
async def test_a_definition_changed_after_approval_is_quarantined_and_never_called(
    nats_url, redis_url, tmp_path, variant, name, reason, called_out
):
    state, calls = tmp_path / "state", tmp_path / "calls"
    state.write_text("base")
    async with running_gateway(nats_url, redis_url, tmp_path, drifting_config(state, calls)) as gateway:
        pinning = _pinning(gateway)
        async with gateway.client(ADMIN_KEY) as client:
            assert "drift__add" in {t.name for t in (await client.list_tools()).tools}  # trusted on first use
            assert (await client.call_tool("drift__add", {"a": 1, "b": 2})).content[0].text == "3"
        assert _calls(calls) == ["base"]

        watcher = await connect(nats_url, "test-pin-drift")
        drifts: asyncio.Queue[PinDrift] = asyncio.Queue()

        async def on_drift(msg: Any) -> None:
            await drifts.put(PinDrift.model_validate_json(msg.data))

        await watcher.subscribe(subjects.PIN_DRIFT, cb=on_drift)
        state.write_text(variant)  # the upstream changes in place and announces it
        await poll_until(
            lambda: (d := pinning.outcomes["drift"].decision("tool", name)) is not None and d.verdict == "quarantined",
            f"drift/{name} quarantined",
        )
        decision = pinning.outcomes["drift"].decision("tool", name)
        assert decision is not None
        drift = await asyncio.wait_for(drifts.get(), 30)  # a person's console hears of it
        await watcher.close()
        assert (drift.server, drift.kind, drift.name, drift.reason, drift.verdict) == (
            "drift",
            "tool",
            name,
            reason,
            "quarantined",
        )
        assert (drift.sha256, drift.approved_sha256, drift.renamed_from) == (
            decision.sha256,
            decision.approved_sha256,
            decision.renamed_from,
        )
        assert drift.sha256 is not None and drift.sha256 != drift.approved_sha256
        assert drift.renamed_from == ("add" if reason == "renamed" else None)
        assert drift.mode == "tofu" and drift.instance == pinning.instance
        await poll_until(lambda: not _listed(gateway, name) and not _listed(gateway, "add"), "the catalog to follow")

        async with gateway.client(ADMIN_KEY) as client:
            assert not {"drift__add", "drift__sum"} & {t.name for t in (await client.list_tools()).tools}
            with pytest.raises(MCPError) as held:  # the agent learns what the call waits for
                await client.call_tool(f"drift__{name}", {"a": 1, "b": 2, "note": "n"})
            assert f"`bastion tools approve drift/{name}`" in held.value.error.message
        async with gateway.client(READONLY_KEY) as client:  # a key without the grant learns nothing of it
            with pytest.raises(MCPError) as refused:
                await client.call_tool(f"drift__{name}", {"a": 1, "b": 2, "note": "n"})
            assert "approve" not in refused.value.error.message
        outcome = await _routed_call(gateway, name)
        assert outcome.error is not None and outcome.error.kind == "forbidden"
        assert f"`bastion tools approve drift/{name}`" in outcome.error.message
        assert [(d.interceptor, d.rule, d.action) for d in outcome.interceptions] == [
            ("pinning", "quarantined", "block")
        ]
        assert _calls(calls) == ["base"], "a call reached the changed definition"

        # what a person sees: the pending record and its field-level diff
        nc = await connect(nats_url, "test-pins")
        try:
            kv = await kv_bucket(nc.jetstream(), subjects.KV_PINS)
            waiting = pending_records((await read_records(kv)).values())
            assert [(r.server, r.name, r.pending_reason) for r in waiting] == [("drift", name, reason)]
        finally:
            await nc.close()
        shown = await _cli("tools", "diff", f"drift/{name}", "--nats-url", nats_url)
        assert shown.exit_code == 0, shown.output
        assert called_out in shown.output


async def test_approve_makes_it_callable_reject_keeps_it_quarantined_each_audited(nats_url, redis_url, tmp_path):
    state, calls = tmp_path / "state", tmp_path / "calls"
    state.write_text("base")
    async with running_gateway(nats_url, redis_url, tmp_path, drifting_config(state, calls)) as gateway:
        pinning = _pinning(gateway)

        def verdict(name: str) -> str | None:
            decision = pinning.outcomes["drift"].decision("tool", name)
            return decision.verdict if decision is not None else None

        state.write_text("property")
        await poll_until(lambda: verdict("add") == "quarantined", "drift/add quarantined")
        listed = await _cli("tools", "pending", "--nats-url", nats_url)
        assert listed.exit_code == 0 and "drift/add" in listed.output, listed.output

        nc = await connect(nats_url, "test-pins")
        try:
            kv = await kv_bucket(nc.jetstream(), subjects.KV_PINS)
            held = await find(kv, "drift", "add")
        finally:
            await nc.close()
        assert held.record.pending is not None
        seen = held.record.pending.sha256[:12]

        wrong = await _cli("tools", "approve", "drift/add", "--sha", "0123456789ab", "--nats-url", nats_url)
        assert wrong.exit_code == 1 and "look at the diff again" in wrong.output
        approved = await _cli("tools", "approve", "drift/add", "--sha", seen, "--nats-url", nats_url)
        assert approved.exit_code == 0 and "warning" not in approved.output, approved.output
        # every executor hears of it through its watch, lists the server again and serves it
        await poll_until(lambda: verdict("add") == "served" and _listed(gateway, "add"), "drift/add approved")
        async with gateway.client(ADMIN_KEY) as client:
            result = await client.call_tool("drift__add", {"a": 2, "b": 3, "note": "n"})
            assert result.content[0].text == "5"
        assert _calls(calls) == ["property"]

        state.write_text("default")  # another change: this one a person rejects
        await poll_until(lambda: verdict("add") == "quarantined", "the new change quarantined")
        rejected = await _cli("tools", "reject", "drift/add", "--nats-url", nats_url)
        assert rejected.exit_code == 0, rejected.output
        nc = await connect(nats_url, "test-pins")
        try:
            kv = await kv_bucket(nc.jetstream(), subjects.KV_PINS)
            record = (await find(kv, "drift", "add")).record
        finally:
            await nc.close()
        assert record.pending is None and len(record.rejected) == 1
        (gone,) = record.rejected
        state.write_text("base")  # the upstream goes back and forth: the rejected one stays out
        await poll_until(
            lambda: (d := pinning.outcomes["drift"].decision("tool", "add")) is not None and d.sha256 != gone,
            "another definition listed",
        )
        state.write_text("default")
        await poll_until(
            lambda: (d := pinning.outcomes["drift"].decision("tool", "add")) is not None and d.reason == "rejected",
            "the rejected definition recognised",
        )
        assert not _listed(gateway, "add")
        outcome = await _routed_call(gateway, "add")
        assert outcome.error is not None and "was rejected by a person" in outcome.error.message
        assert _calls(calls) == ["property"]

        rows = await kind_rows_when(nats_url, "admin", lambda found: len(found) >= 2)  # the two decisions
        decisions = [(r.action, r.actor, r.target) for r in rows]
        assert ("pin.approve", PRINCIPAL, "drift/tool/add") in decisions
        assert ("pin.reject", PRINCIPAL, "drift/tool/add") in decisions


async def test_the_admin_api_shows_the_diff_and_a_person_with_tools_approve_decides(nats_url, redis_url, tmp_path):
    """The same decision over `/admin/v1/tools` (what the console's catalog view calls): pending, the
    diff, a viewer refused with 403 naming `tools:approve`, a stale version refused with 409, an
    operator's approval serves the definition, and the admin audit event names the operator."""
    state, calls = tmp_path / "state", tmp_path / "calls"
    state.write_text("base")
    async with (
        running_gateway(nats_url, redis_url, tmp_path, drifting_config(state, calls)) as gateway,
        running_admin(nats_url) as (admin, owner),
    ):
        pinning = _pinning(gateway)
        state.write_text("property")
        await poll_until(
            lambda: (d := pinning.outcomes["drift"].decision("tool", "add")) is not None and d.verdict == "quarantined",
            "drift/add quarantined",
        )
        operator = await principal_token(admin, owner, "olga@example.com", {"role": "operator"}, kind="person")
        viewer = await principal_token(admin, owner, "vic@example.com", {"role": "viewer"}, kind="person")
        url = f"{admin.url}/admin/v1/tools"
        async with httpx.AsyncClient(timeout=10) as http:
            as_operator = {"Authorization": f"Bearer {operator}"}
            waiting = (await http.get(f"{url}/pending", headers=as_operator)).json()
            assert [(w["server"], w["name"], w["reason"]) for w in waiting] == [("drift", "add", "changed")]
            shown = (await http.get(f"{url}/drift/add/diff", headers=as_operator)).json()
            assert "property 'note' added" in shown["diff"]

            refused = await http.post(f"{url}/drift/add/approve", headers={"Authorization": f"Bearer {viewer}"})
            assert refused.status_code == 403 and "tools:approve" in refused.text
            stale = await http.post(f"{url}/drift/add/approve", headers=as_operator, json={"sha256": "0123456789ab"})
            assert stale.status_code == 409 and "look at the diff again" in stale.text
            approved = await http.post(
                f"{url}/drift/add/approve", headers=as_operator, json={"sha256": shown["pending"][:12]}
            )
            assert approved.status_code == 200, approved.text
            assert (await http.get(f"{url}/drift/nothing/diff", headers=as_operator)).status_code == 404

        await poll_until(lambda: _listed(gateway, "add"), "drift/add served again")
        async with gateway.client(ADMIN_KEY) as client:
            assert (await client.call_tool("drift__add", {"a": 2, "b": 3, "note": "n"})).content[0].text == "5"

        def approvals(rows: list[AuditEvent]) -> list[tuple[str | None, ...]]:
            return [(r.action, r.actor, r.target) for r in rows if r.action == "pin.approve"]

        rows = await kind_rows_when(nats_url, "admin", approvals)
        assert approvals(rows) == [("pin.approve", "olga@example.com", "drift/add")]
