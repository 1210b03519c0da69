"""A call parked for approval, answered as a gateway-hosted task to agents that speak tasks
(docs/approvals.md, docs/tasks.md): the refund gateway of tests/support/approvals_gateway.py (real policy,
executor, refund upstream writing a ledger, admin service) and the raw task-speaking agents of
test_tasks, in both revisions' forms, with a second ingress replica answering for the task."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest

from libs.common.contracts.messages import AuditEvent
from libs.common.settings import IngressSettings
from services.ingress.service import IngressService
from tests.integration.test_tasks import RELATED, Legacy, Modern
from tests.support.admin_api import principal_token
from tests.support.approvals_gateway import (
    OTHER_KEY,
    POLICIES,
    SECRETS,
    SUPPORT_KEY,
    approver,
    approver_token,
    gateway,
    ledger,
    refund_config,
    webhook,
)
from tests.support.audit_rows import audit_rows_when
from tests.support.gateway import Gateway
from tests.support.polling import poll_until
from tests.support.refund_gateway import refund_gateway, runs_in

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")]

__all__ = ["approver", "approver_token", "gateway", "ledger", "webhook"]  # fixtures, shared


@pytest.fixture(scope="module")
async def second(gateway: Gateway) -> AsyncIterator[IngressService]:
    """A second ingress replica on the same bus: it never saw the call that made the task."""
    replica = IngressService(IngressSettings(nats_url=gateway.nats_url, port=0, instance="-b"))
    await replica.start()
    await poll_until(lambda: replica.catalog.server_status("billing") is not None, "billing on replica b")
    yield replica
    await replica.stop()


@pytest.fixture(scope="module")
async def hosting(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient, Path]]:
    """The refund gateway with `refund` hosted as a task by the operator (slow calls become tasks):
    a parked call of it is an approval task all the same. Its approver, and its ledger."""
    workdir = tmp_path_factory.mktemp("approval-tasks-hosted")
    (workdir / "ledger.txt").touch()
    config = refund_config(workdir)
    config["mcpServers"]["billing"]["tasks"] = {"refund": {"after_ms": 600_000}}
    async with refund_gateway(workdir, config, SECRETS, POLICIES, "the refund example") as gw:
        assert gw.admin is not None
        token = await principal_token(
            gw.admin, gw.admin_token, "fran@example.com", {"role": "call_approver"}, kind="person"
        )
        async with httpx.AsyncClient(
            base_url=gw.admin_api, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as decider:
            yield gw, decider, workdir / "ledger.txt"


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=30) as client:
        yield client


def _refund(order: str, amount: int, **more: Any) -> dict[str, Any]:
    return {"name": "billing__refund", "arguments": {"order": order, "amount": amount}, **more}


def _approval_id(task: dict[str, Any]) -> str:
    found = re.search(r"approval (ap_\w+)", task["statusMessage"])
    assert found is not None, task
    return found.group(1)


async def _ended(agent: Legacy | Modern, url: str, task_id: str, what: str) -> dict[str, Any]:
    """The task once it is no longer working, as an agent sees it polling `tasks/get` at `url`."""

    async def finished() -> dict[str, Any] | None:
        got = (await agent.rpc(url, "tasks/get", {"taskId": task_id}))["result"]
        return got if got["status"] != "working" else None

    return await poll_until(finished, what)


def _text(result: dict[str, Any]) -> str:
    return "".join(block.get("text", "") for block in result["content"])


async def test_an_approved_refund_task_completes_with_the_approved_run(
    gateway: Gateway, approver: httpx.AsyncClient, ledger: Path, http: httpx2.AsyncClient
) -> None:
    agent = await Legacy(http, SUPPORT_KEY).open(gateway.url)
    made = await agent.rpc(gateway.url, "tools/call", _refund("o-task", 400, task={}))
    task = made["result"]["task"]
    assert task["status"] == "working"
    assert "finance" in task["statusMessage"] and "refund-above-100" in task["statusMessage"]
    assert "expires at" in task["statusMessage"]
    approval_id = _approval_id(task)

    got = (await agent.rpc(gateway.url, "tasks/get", {"taskId": task["taskId"]}))["result"]
    assert (got["status"], got["statusMessage"]) == ("working", task["statusMessage"])
    assert "o-task" not in runs_in(ledger)

    shown = (await approver.get(f"/approvals/{approval_id}")).json()
    assert (shown["state"], shown["arguments"]) == ("pending", {"order": "o-task", "amount": 400})
    approved = await approver.post(f"/approvals/{approval_id}/approve", json={"reason": "goodwill"})
    assert approved.status_code == 200, approved.text
    assert (await _ended(agent, gateway.url, task["taskId"], "the approved task to end"))["status"] == "completed"
    result = (await agent.rpc(gateway.url, "tasks/result", {"taskId": task["taskId"]}))["result"]
    assert _text(result) == "refunded 400 EUR on o-task"
    assert result["_meta"][RELATED] == {"taskId": task["taskId"]}
    assert runs_in(ledger).splitlines().count("refund o-task 400") == 1
    assert (await approver.get(f"/approvals/{approval_id}")).json()["state"] == "ran"

    def complete(rows: list[AuditEvent]) -> bool:  # the call's row and the run's, in whichever order they land
        mine = [(r.kind, r.action) for r in rows if r.target == task["taskId"]]
        return ("task", "run") in mine and any(kind == "tool_call" for kind, _ in mine)

    rows = await audit_rows_when(gateway.nats_url, "support", complete, limit=1000)  # each poll of a task is a row
    (call,) = [r for r in rows if r.kind == "tool_call" and r.target == task["taskId"]]
    (run,) = [r for r in rows if r.kind == "task" and r.action == "run" and r.target == task["taskId"]]
    assert (call.error_kind, call.approval_id, call.execution) == ("approval_required", approval_id, "not_run")
    assert (run.parent_id, run.approval_id, run.status) == (call.event_id, approval_id, "ok")


async def test_a_denied_refund_task_fails_with_the_reason_on_another_replica(
    gateway: Gateway,
    second: IngressService,
    approver: httpx.AsyncClient,
    ledger: Path,
    http: httpx2.AsyncClient,
) -> None:
    agent = Modern(http, SUPPORT_KEY)
    made = (await agent.rpc(gateway.url, "tools/call", _refund("o-task-denied", 700)))["result"]
    assert (made["resultType"], made["status"]) == ("task", "working")
    approval_id = _approval_id(made)
    got = (await agent.rpc(second.url, "tasks/get", {"taskId": made["taskId"]}))["result"]
    assert got["status"] == "working" and approval_id in got["statusMessage"]

    denied = await approver.post(f"/approvals/{approval_id}/deny", json={"reason": "fraud pattern"})
    assert denied.status_code == 200, denied.text
    ended = await _ended(agent, second.url, made["taskId"], "the denied task to end")
    assert ended["status"] == "failed"
    assert "denied by fran@example.com: fraud pattern" in ended["statusMessage"]
    assert ended["error"]["code"] == -32050 and "did not run" in ended["error"]["message"]
    assert "o-task-denied" not in runs_in(ledger)


async def test_cancelling_the_task_leaves_the_approval_as_it_is(
    gateway: Gateway, approver: httpx.AsyncClient, ledger: Path, http: httpx2.AsyncClient
) -> None:
    agent = await Legacy(http, SUPPORT_KEY).open(gateway.url)
    task = (await agent.rpc(gateway.url, "tools/call", _refund("o-task-cancelled", 300, task={})))["result"]["task"]
    approval_id = _approval_id(task)
    cancelled = (await agent.rpc(gateway.url, "tasks/cancel", {"taskId": task["taskId"]}))["result"]
    assert cancelled["taskId"] == task["taskId"]

    async def settled() -> bool:
        got = (await agent.rpc(gateway.url, "tasks/get", {"taskId": task["taskId"]}))["result"]
        return got["status"] == "cancelled"

    await poll_until(settled, "the task to read cancelled")
    assert (await approver.get(f"/approvals/{approval_id}")).json()["state"] == "pending"
    # approved after the cancel: nobody collects it, so it never runs
    approved = await approver.post(f"/approvals/{approval_id}/approve", json={"reason": "late"})
    assert approved.status_code == 200, approved.text
    assert (await approver.get(f"/approvals/{approval_id}")).json()["state"] == "approved"
    assert "o-task-cancelled" not in runs_in(ledger)


async def test_an_agent_naming_the_approval_itself_keeps_the_error_and_retry_answer(
    gateway: Gateway, http: httpx2.AsyncClient
) -> None:
    """A task-speaking agent collecting by retry (it named the approval) is answered as before, not
    given a second task for the same approval."""
    agent = Modern(http, SUPPORT_KEY)
    made = (await agent.rpc(gateway.url, "tools/call", _refund("o-task-retry", 200)))["result"]
    approval_id = _approval_id(made)
    retry = _refund("o-task-retry", 200, _meta={"bastion/approval": approval_id})
    answer = await Legacy(http, SUPPORT_KEY).open(gateway.url)
    polled = await answer.rpc(gateway.url, "tools/call", {**retry, "task": {}})
    assert polled["error"]["code"] == -32055 and polled["error"]["data"]["approval"]["id"] == approval_id


async def test_a_parked_call_of_a_tool_hosted_as_a_task_is_an_approval_task(
    hosting: tuple[Gateway, httpx.AsyncClient, Path], http: httpx2.AsyncClient
) -> None:
    gateway, approver, ledger = hosting
    agent = Modern(http, SUPPORT_KEY)
    small = (await agent.rpc(gateway.url, "tools/call", _refund("o-hosted-small", 50)))["result"]
    assert _text(small) == "refunded 50 EUR on o-hosted-small"  # quick: a plain answer, as before
    made = (await agent.rpc(gateway.url, "tools/call", _refund("o-hosted", 900)))["result"]
    assert (made["resultType"], made["status"]) == ("task", "working")
    approval_id = _approval_id(made)
    # another key granted the same tool learns nothing of the task
    stolen = await Modern(http, OTHER_KEY).rpc(gateway.url, "tasks/get", {"taskId": made["taskId"]})
    assert stolen["error"]["code"] == -32602 and "Unknown task" in stolen["error"]["message"]
    # an agent collecting by retry itself is answered as before, not given a second task
    retrying = await Legacy(http, SUPPORT_KEY).open(gateway.url)
    retry = _refund("o-hosted", 900, task={}, _meta={"bastion/approval": approval_id})
    polled = await retrying.rpc(gateway.url, "tools/call", retry)
    assert polled["error"]["code"] == -32055 and polled["error"]["data"]["approval"]["id"] == approval_id

    approved = await approver.post(f"/approvals/{approval_id}/approve", json={"reason": "fine"})
    assert approved.status_code == 200, approved.text
    done = await _ended(agent, gateway.url, made["taskId"], "the approved hosted task to end")
    assert done["status"] == "completed" and _text(done["result"]) == "refunded 900 EUR on o-hosted"
    assert runs_in(ledger).splitlines().count("refund o-hosted 900") == 1
