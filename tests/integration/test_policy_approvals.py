"""Cedar policies and approvals at run time, attacked on a real gateway (NATS, Valkey, ClickHouse,
policy, an executor running a real stdio upstream that writes each run to a ledger, the admin
service, the official MCP client): the refund example of docs/policy.md end to end, a destructive
tool refused by a policy the audit row names, an agent re-sending other arguments, another key
collecting an approval, an approver without the permission, a caller approving itself, and a policy
text with a syntax error."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from libs.common.bus.nats import connect
from libs.common.cedar.approvals import APPROVAL_META, approval_key
from libs.common.contracts import subjects
from libs.common.contracts.errors import JSONRPC_CODE, ErrorKind
from libs.common.contracts.messages import AuditEvent
from libs.common.runtime.sealing import is_sealed
from tests.support.admin_api import principal_token
from tests.support.approvals_gateway import (
    OTHER_KEY,
    POLICIES,
    SUPPORT_KEY,
    WEBHOOK_SECRET,
    approver,
    approver_token,
    gateway,
    ledger,
    parked_refund,
    refund_config,
    refused_retry,
    result_text,
    retried_refund,
    webhook,
)
from tests.support.audit_rows import audit_rows_when, kind_rows_when
from tests.support.console_browser import browser
from tests.support.gateway import Gateway
from tests.support.polling import poll_until
from tests.support.refund_gateway import runs_in
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

__all__ = ["approver", "approver_token", "gateway", "ledger", "webhook"]  # fixtures, shared


async def test_the_refund_example_end_to_end(gateway: Gateway, approver: httpx.AsyncClient, ledger: Path) -> None:
    async with gateway.client(SUPPORT_KEY) as client:
        small = await client.call_tool("billing__refund", {"order": "o-small", "amount": 100})
    assert result_text(small) == "refunded 100 EUR on o-small"

    data = await parked_refund(gateway, {"order": "o-big", "amount": 250})
    approval = data["approval"]
    assert (approval["state"], approval["policy"], approval["approvers"]) == ("pending", "refund-above-100", "finance")
    assert approval["reason"] == "refunds above 100 EUR need a person"
    assert data["retry"]["_meta"] == {APPROVAL_META: approval["id"]}
    assert "o-big" not in runs_in(ledger)

    # the parked arguments are on the bus, sealed
    nc = await connect(gateway.nats_url, "test-approvals-kv")
    try:
        stored = (await (await nc.jetstream().key_value(subjects.KV_APPROVALS)).get(approval_key(approval["id"]))).value
    finally:
        await nc.close()
    assert stored is not None and b"o-big" not in stored and b'"amount"' not in stored
    assert is_sealed(json.loads(stored)["call_sealed"])

    # still waiting: the agent's retry runs nothing
    waiting = await refused_retry(gateway, approval["id"], {"order": "o-big", "amount": 250})
    assert waiting.data["approval"]["state"] == "pending"

    pending = (await approver.get("/approvals", params={"state": "pending"})).json()
    (shown,) = [p for p in pending if p["id"] == approval["id"]]
    assert shown["arguments"] == {"order": "o-big", "amount": 250}
    assert (shown["key_name"], shown["user_id"]) == ("support", "sam")
    approved = await approver.post(f"/approvals/{approval['id']}/approve", json={"reason": "customer is right"})
    assert approved.status_code == 200, approved.text
    assert (approved.json()["state"], approved.json()["decided_by"]) == ("approved", "fran@example.com")
    assert (await approver.post(f"/approvals/{approval['id']}/deny", json={"reason": "late"})).status_code == 409

    # the agent comes back with other arguments: the approved ones run, once
    ran = await retried_refund(gateway, approval["id"], {"order": "o-big", "amount": 99999})
    assert result_text(ran) == "refunded 250 EUR on o-big"
    again = await retried_refund(gateway, approval["id"], {"order": "o-evil", "amount": 1})
    assert result_text(again) == "refunded 250 EUR on o-big"
    assert runs_in(ledger).splitlines().count("refund o-big 250") == 1
    assert "o-evil" not in runs_in(ledger) and "99999" not in runs_in(ledger)
    assert (await approver.get(f"/approvals/{approval['id']}")).json()["state"] == "ran"

    def complete(rows: list[AuditEvent]) -> bool:
        return sum(1 for r in rows if r.approval_id == approval["id"]) >= 4

    rows = await audit_rows_when(gateway.nats_url, "support", complete)
    mine = [r for r in rows if r.approval_id == approval["id"]]
    assert {(r.status, r.error_kind, r.policy_id) for r in mine} >= {
        ("denied", "approval_required", "refund-above-100"),
        ("ok", None, "refund-above-100"),
    }
    decided = await kind_rows_when(gateway.nats_url, "admin", lambda rs: any(r.target == approval["id"] for r in rs))
    (decision,) = [r for r in decided if r.target == approval["id"]]
    assert (decision.action, decision.actor) == ("approval.approve", "fran@example.com")
    assert "o-big" not in (decision.after or "") and "[sealed]" in (decision.after or "")


async def test_a_denied_refund_never_runs(gateway: Gateway, approver: httpx.AsyncClient, ledger: Path) -> None:
    approval = (await parked_refund(gateway, {"order": "o-denied", "amount": 500}))["approval"]
    denied = await approver.post(f"/approvals/{approval['id']}/deny", json={"reason": "fraud pattern"})
    assert denied.status_code == 200, denied.text
    assert (await approver.post(f"/approvals/{approval['id']}/approve", json={"reason": "oops"})).status_code == 409
    refused = await refused_retry(gateway, approval["id"], {"order": "o-denied", "amount": 500})
    assert refused.code == JSONRPC_CODE[ErrorKind.FORBIDDEN]
    assert "denied by fran@example.com: fraud pattern" in refused.message
    assert "o-denied" not in runs_in(ledger)


async def test_an_expired_refund_never_runs(gateway: Gateway, approver: httpx.AsyncClient, ledger: Path) -> None:
    approval = (await parked_refund(gateway, {"order": "o-late", "amount": 200000}))["approval"]
    assert approval["policy"] in {"refund-above-100", "refund-huge"}
    assert approval["expires_at"] - approval["created_at"] == pytest.approx(1.0, abs=0.01)

    async def expired() -> bool:
        return (await approver.get(f"/approvals/{approval['id']}")).json()["state"] == "expired"

    await poll_until(expired, "the approval to expire")
    late = await approver.post(f"/approvals/{approval['id']}/approve", json={"reason": "too late"})
    assert late.status_code == 409 and "expired" in late.json()["message"]
    refused = await refused_retry(gateway, approval["id"], {"order": "o-late", "amount": 200000})
    assert "expired" in refused.message
    assert "o-late" not in runs_in(ledger)
    rows = await kind_rows_when(gateway.nats_url, "admin", lambda rs: any(r.target == approval["id"] for r in rs))
    (expiry,) = [r for r in rows if r.target == approval["id"]]  # one, whichever replica or step moved it
    assert (expiry.actor, expiry.action, expiry.policy_id) == ("timeout", "approval.expire", approval["policy"])


async def test_another_key_cannot_collect_an_approval(
    gateway: Gateway, approver: httpx.AsyncClient, ledger: Path
) -> None:
    approval = (await parked_refund(gateway, {"order": "o-mine", "amount": 300}))["approval"]
    await approver.post(f"/approvals/{approval['id']}/approve", json={"reason": "fine"})
    refused = await refused_retry(gateway, approval["id"], {"order": "o-mine", "amount": 300}, key=OTHER_KEY)
    assert refused.code == JSONRPC_CODE[ErrorKind.FORBIDDEN]
    assert "o-mine" not in runs_in(ledger)
    # and the approval is still the support key's to collect
    assert result_text(await retried_refund(gateway, approval["id"], {})) == "refunded 300 EUR on o-mine"


async def test_delete_is_refused_by_a_policy_named_in_the_audit_row(gateway: Gateway, ledger: Path) -> None:
    async with gateway.client(OTHER_KEY) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("billing__delete_order", {"order": "o-1"})
    assert refused.value.code == JSONRPC_CODE[ErrorKind.FORBIDDEN]
    assert "no-delete-on-billing" in refused.value.message and "never deleted by an agent" in refused.value.message
    assert "delete o-1" not in runs_in(ledger)
    rows = await audit_rows_when(gateway.nats_url, "other", lambda rs: any(r.tool == "delete_order" for r in rs))
    (row,) = [r for r in rows if r.tool == "delete_order"]
    assert (row.status, row.error_kind, row.policy_id, row.execution) == (
        "denied",
        "forbidden",
        "no-delete-on-billing",
        "not_run",
    )


async def test_a_key_reads_only_its_own_customers_rows(gateway: Gateway, ledger: Path) -> None:
    async with gateway.client(SUPPORT_KEY) as client:
        assert (
            result_text(await client.call_tool("billing__lookup", {"order": "o-2", "customer": "acme"}))
            == "o-2 of acme"
        )
        with pytest.raises(MCPError) as refused:
            await client.call_tool("billing__lookup", {"order": "o-3", "customer": "globex"})
        with pytest.raises(MCPError) as missing:
            await client.call_tool("billing__lookup", {"order": "o-4"})  # the policy cannot read it: refused
    assert "own-customer-rows" in refused.value.message and "own-customer-rows" in missing.value.message
    assert "lookup o-3" not in runs_in(ledger) and "lookup o-4" not in runs_in(ledger)


async def test_an_approver_without_the_permission_is_refused(gateway: Gateway) -> None:
    assert gateway.admin is not None
    approval = (await parked_refund(gateway, {"order": "o-op", "amount": 150}))["approval"]
    token = await principal_token(gateway.admin, gateway.admin_token, "olga@example.com", {"role": "operator"})
    async with httpx.AsyncClient(base_url=gateway.admin_api, timeout=10) as http:
        operator = {"Authorization": f"Bearer {token}"}
        for attempt in (
            http.post(f"/approvals/{approval['id']}/approve", json={"reason": "me"}, headers=operator),
            http.get("/approvals", headers=operator),
        ):
            answer = await attempt
            assert answer.status_code == 403 and answer.json()["permission"] == "approvals:decide"
        # the agent's own key is no admin credential: refused as one
        agent = await http.post(
            f"/approvals/{approval['id']}/approve",
            json={"reason": "me"},
            headers={"Authorization": f"Bearer {SUPPORT_KEY}"},
        )
        assert agent.status_code == 403 and "virtual key" in agent.json()["message"]
        owner = await http.get(f"/approvals/{approval['id']}", headers=gateway.admin_headers)
    assert owner.json()["state"] == "pending"


async def test_the_caller_cannot_approve_its_own_call(gateway: Gateway, ledger: Path) -> None:
    assert gateway.admin is not None
    approval = (await parked_refund(gateway, {"order": "o-self", "amount": 700}))["approval"]
    # a person who is the call's user (the support key acts for sam), holding approvals:decide
    token = await principal_token(gateway.admin, gateway.admin_token, "sam", {"role": "call_approver"}, kind="person")
    async with httpx.AsyncClient(
        base_url=gateway.admin_api, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as sam:
        refused = await sam.post(f"/approvals/{approval['id']}/approve", json={"reason": "trust me"})
        assert refused.status_code == 403 and "another person decides it" in refused.json()["message"]
        assert (await sam.get(f"/approvals/{approval['id']}")).json()["state"] == "pending"
    await refused_retry(gateway, approval["id"], {"order": "o-self", "amount": 700})
    assert "o-self" not in runs_in(ledger)


async def test_a_policy_with_a_syntax_error_is_refused_with_its_line(gateway: Gateway) -> None:
    broken = POLICIES + '\n@id("broken")\nforbid (principal, action resource);\n'
    line = POLICIES.count("\n") + 2
    async with httpx.AsyncClient(base_url=gateway.admin_api, headers=gateway.admin_headers, timeout=10) as owner:
        before = (await owner.get("/policies")).json()
        refused = await owner.post("/policies", json={"text": broken})
        assert refused.status_code == 400
        assert refused.json()["message"].startswith(f"the policies do not apply: line {line}: ")
        permit = await owner.post("/policies", json={"text": '@id("p")\npermit (principal, action, resource);'})
        assert permit.status_code == 400 and "line 1" in permit.json()["message"]
        check = await owner.post(
            "/policies/check",
            json={"call": {"key": "support", "server": "billing", "tool": "refund", "arguments": {"amount": 101}}},
        )
        renamed = {"key": "support", "server": "billing", "tool": "remove_order", "aliases": ["delete_order"]}
        aliased = await owner.post("/policies/check", json={"call": renamed})
        after = (await owner.get("/policies")).json()
    assert check.json()["decision"] == "approval" and check.json()["policy"] == "refund-above-100"
    assert (aliased.json()["decision"], aliased.json()["policy"]) == ("deny", "no-delete-on-billing"), aliased.text
    assert after == before  # nothing stored, the same version active


async def test_the_config_file_publishes_its_policies_once(gateway: Gateway, tmp_path: Path) -> None:
    raw = refund_config(Path(gateway.config.mcp_servers["billing"].env["LEDGER_FILE"]).parent)
    async with httpx.AsyncClient(base_url=gateway.admin_api, headers=gateway.admin_headers, timeout=10) as owner:
        before = (await owner.get("/policies")).json()
        await gateway.apply({**raw, "policies": POLICIES})  # the active text already: no new version
        assert (await owner.get("/policies")).json() == before
        stricter = POLICIES + '\n@id("no-lookups")\nforbid (principal, action, resource == Tool::"billing/lookup");\n'
        await gateway.apply({**raw, "policies": stricter})
        after = (await owner.get("/policies")).json()
        assert after["active"] == before["active"] + 1
        assert (after["versions"][0]["source"], after["versions"][0]["policies"][-1]) == ("config", "no-lookups")

        async def refused() -> bool:
            async with gateway.client(SUPPORT_KEY) as client:
                try:
                    await client.call_tool("billing__lookup", {"order": "o-9", "customer": "acme"})
                except MCPError as exc:
                    return "no-lookups" in exc.message
            return False

        await poll_until(refused, "the new version to apply")
        back = await owner.post(f"/policies/{before['active']}/activate")
        assert back.json()["active"] == before["active"]


async def test_an_approver_decides_in_the_console(
    gateway: Gateway, approver_token: str, approver: httpx.AsyncClient, ledger: Path, tmp_path: Path
) -> None:
    assert gateway.admin is not None
    approval = (await parked_refund(gateway, {"order": "o-console", "amount": 180}))["approval"]
    row = f"#approvals-table tr[data-approval='{approval['id']}']"
    async with browser(tmp_path / "profile") as page:
        await page.open(f"{gateway.admin.url}/console#token={approver_token}")
        await page.wait("document.body.dataset.state === 'ready'", "the console signed in")
        assert await page.evaluate("[...document.querySelectorAll('nav.main a')].map(a => a.id)") == ["nav-approvals"]
        await page.shown(row)
        arguments = await page.text(f"{row} .approval-arguments")
        assert '"order": "o-console"' in arguments and '"amount": 180' in arguments
        assert "refund-above-100" in await page.text(row)
        await page.fill(f"{row} .approval-reason", "looked at the order")
        button = f"{row} .approval-approve"
        await page.wait(f"!document.querySelector({button!r}).disabled", "approve open once a reason is given")
        await page.click(f"{row} .approval-approve")
        await page.wait(f"!document.querySelector({row!r})", "the approved call off the pending list")
        assert page.errors == []
    shown = (await approver.get(f"/approvals/{approval['id']}")).json()
    assert (shown["state"], shown["decided_by"], shown["decision_reason"]) == (
        "approved",
        "fran@example.com",
        "looked at the order",
    )
    assert result_text(await retried_refund(gateway, approval["id"], {})) == "refunded 180 EUR on o-console"
    assert runs_in(ledger).splitlines().count("refund o-console 180") == 1


async def test_a_parked_call_is_posted_to_the_webhook_signed_without_its_arguments(
    gateway: Gateway, webhook: WebhookReceiver
) -> None:
    approval = (await parked_refund(gateway, {"order": "o-hook", "amount": 4242}))["approval"]

    def posted() -> list[Any]:
        return [r for r in webhook.received if approval["id"].encode() in r.body]

    (notice,) = await poll_until(posted, "the webhook's notice")
    assert notice.path == "/hooks/approvals" and notice.headers["content-type"] == "application/json"
    expected = hmac.new(WEBHOOK_SECRET.encode(), notice.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(notice.headers["x-bastion-signature"], f"sha256={expected}")
    body = json.loads(notice.body)
    assert body["event"] == "approval.pending"
    assert (body["approval"]["policy"], body["approval"]["approvers"]) == ("refund-above-100", "finance")
    assert b"o-hook" not in notice.body and b'"amount"' not in notice.body  # never the arguments


async def test_concurrent_retries_of_an_approved_call_run_it_once(
    gateway: Gateway, approver: httpx.AsyncClient, ledger: Path
) -> None:
    approval = (await parked_refund(gateway, {"order": "o-race", "amount": 333}))["approval"]
    await approver.post(f"/approvals/{approval['id']}/approve", json={"reason": "fine"})
    answers = await asyncio.gather(*(retried_refund(gateway, approval["id"], {"amount": i}) for i in range(6)))
    results = [result_text(a) for a in answers if not isinstance(a, MCPError)]
    waiting = [a for a in answers if isinstance(a, MCPError)]
    assert results and set(results) == {"refunded 333 EUR on o-race"}
    assert all(a.data["approval"]["state"] == "running" for a in waiting)  # the run was under way
    assert runs_in(ledger).splitlines().count("refund o-race 333") == 1
    assert result_text(await retried_refund(gateway, approval["id"], {})) == "refunded 333 EUR on o-race"


async def test_an_agent_without_meta_collects_by_calling_again_with_the_same_arguments(
    gateway: Gateway, approver: httpx.AsyncClient, ledger: Path
) -> None:
    """A stock client's LLM cannot send `params._meta`: calling again the same way finds the same
    approval (not a second one), and, once approved, runs it once."""
    arguments = {"order": "o-again", "amount": 4242}
    async with gateway.client(SUPPORT_KEY) as client:
        with pytest.raises(MCPError) as parked:
            await client.call_tool("billing__refund", arguments)
    approval = parked.value.data["approval"]
    assert "To get its result once approved, call 'billing__refund' again with the same arguments" in (
        parked.value.message
    )
    assert parked.value.data["retry"]["same_arguments"] is True
    second = await parked_refund(gateway, arguments)  # still waiting: the same approval, not a duplicate
    assert second["approval"]["id"] == approval["id"]
    other = await parked_refund(gateway, {**arguments, "amount": 4243})  # other arguments: another call
    assert other["approval"]["id"] != approval["id"]
    pending = (await approver.get("/approvals", params={"state": "pending"})).json()
    assert sum(1 for p in pending if (p["arguments"] or {}).get("order") == "o-again") == 2
    await approver.post(f"/approvals/{approval['id']}/approve", json={"reason": "fine"})
    async with gateway.client(SUPPORT_KEY) as client:
        ran = await client.call_tool("billing__refund", arguments)
    assert result_text(ran) == "refunded 4242 EUR on o-again"
    assert runs_in(ledger).splitlines().count("refund o-again 4242") == 1
    assert (await approver.get(f"/approvals/{approval['id']}")).json()["state"] == "ran"
    # the same call once more is a new refund: a person decides it again, nothing runs meanwhile
    anew = await parked_refund(gateway, arguments)
    assert anew["approval"]["id"] not in (approval["id"], other["approval"]["id"])
    assert runs_in(ledger).splitlines().count("refund o-again 4242") == 1


async def test_a_denial_is_told_to_the_same_call_once_then_it_asks_anew(
    gateway: Gateway, approver: httpx.AsyncClient, ledger: Path
) -> None:
    arguments = {"order": "o-no", "amount": 777}
    approval = (await parked_refund(gateway, arguments))["approval"]
    await approver.post(f"/approvals/{approval['id']}/deny", json={"reason": "duplicate order"})
    async with gateway.client(SUPPORT_KEY) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("billing__refund", arguments)
    assert refused.value.code == JSONRPC_CODE[ErrorKind.FORBIDDEN]
    assert "denied by fran@example.com: duplicate order" in refused.value.message
    anew = await parked_refund(gateway, arguments)
    assert anew["approval"]["id"] != approval["id"] and anew["approval"]["state"] == "pending"
    assert "o-no" not in runs_in(ledger)


async def test_the_audit_row_of_an_approved_run_says_what_ran_and_marks_replays(
    gateway: Gateway, approver: httpx.AsyncClient, ledger: Path
) -> None:
    approval = (await parked_refund(gateway, {"order": "o-audit", "amount": 4242}))["approval"]
    await approver.post(f"/approvals/{approval['id']}/approve", json={"reason": "fine"})
    ran = await retried_refund(gateway, approval["id"], {"order": "o-audit", "amount": 999999})
    assert result_text(ran) == "refunded 4242 EUR on o-audit"
    replayed = await retried_refund(gateway, approval["id"], {"order": "o-audit", "amount": 1})
    assert result_text(replayed) == "refunded 4242 EUR on o-audit"
    assert runs_in(ledger).splitlines().count("refund o-audit 4242") == 1

    def both(rows: list[AuditEvent]) -> bool:
        return {r.action for r in rows if r.approval_id == approval["id"]} >= {"approval.run", "approval.replay"}

    rows = await audit_rows_when(gateway.nats_url, "support", both)
    (run,) = [r for r in rows if r.approval_id == approval["id"] and r.action == "approval.run"]
    (replay,) = [r for r in rows if r.approval_id == approval["id"] and r.action == "approval.replay"]
    approved = json.dumps({"amount": 4242, "order": "o-audit"}, separators=(",", ":"), sort_keys=True)
    for row in (run, replay):
        assert (row.status, row.policy_id, row.arguments) == ("ok", "refund-above-100", approved)
        assert row.arguments_sha256 == hashlib.sha256(approved.encode()).hexdigest()
        assert "999999" not in (row.arguments or "")
    assert (run.execution, replay.execution) == ("ran", "not_run")  # the replay ran nothing


async def test_amounts_with_and_without_cents_meet_the_documented_limit(gateway: Gateway, ledger: Path) -> None:
    """The refund example of docs/policy.md, to the letter, through the gateway: 50, 20.50 and 100 run;
    100.01 and 500 wait for a person."""
    async with gateway.client(SUPPORT_KEY) as client:
        for amount in (50, 20.50, 100):
            ran = await client.call_tool("billing__refund", {"order": "o-cents", "amount": amount})
            assert result_text(ran) == f"refunded {amount:g} EUR on o-cents"
    for amount in (100.01, 500):
        parked = await parked_refund(gateway, {"order": "o-cents", "amount": amount})
        assert parked["approval"]["policy"] == "refund-above-100"
    assert [line for line in runs_in(ledger).splitlines() if "o-cents" in line] == [
        "refund o-cents 50",
        "refund o-cents 20.5",
        "refund o-cents 100",
    ]
