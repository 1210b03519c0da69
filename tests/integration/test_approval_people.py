"""Approvals judged on people, attacked on a real gateway (NATS, Valkey, ClickHouse, policy, an
executor running the refund upstream that writes each run to a ledger, the admin service): an
approver who signs in as the calling key's user, an approver who created the calling key, approvers
scoped to another tenant, and `bastion approvals` acting only as the principal whose token it is
given (docs/approvals.md)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError
from typer.testing import CliRunner, Result

from cli.main import app
from libs.common.contracts.errors import JSONRPC_CODE, ErrorKind
from libs.common.runtime.sealing import new_key
from tests.support.admin_api import principal_token
from tests.support.audit_rows import kind_rows_when
from tests.support.gateway import Gateway
from tests.support.polling import poll_until
from tests.support.refund_gateway import billing_server, documented_policy, ledger_of, refund_gateway, runs_in

pytestmark = pytest.mark.integration

SUPPORT_KEY = "bk_test_people_support_000000000"
GLOBEX_KEY = "bk_test_people_globex_0000000000"
LONER_KEY = "bk_test_people_loner_00000000000"
SECRETS = new_key()


def _config(workdir: Path) -> dict[str, Any]:
    return {
        "mcpServers": {"billing": billing_server(workdir)},
        "customers": [{"id": "acme", "name": "Acme"}, {"id": "globex", "name": "Globex"}],
        "teams": [
            {"id": "support", "name": "Support", "customer_id": "acme"},
            {"id": "gsupport", "name": "Globex support", "customer_id": "globex"},
        ],
        "users": [{"id": "sam", "name": "Sam", "team_id": "support"}, {"id": "gina", "name": "Gina"}],
        "keys": [
            {"name": "support", "key": SUPPORT_KEY, "tools": ["billing/*"], "user": "sam", "team": "support"},
            {"name": "globex", "key": GLOBEX_KEY, "tools": ["billing/*"], "team": "gsupport", "customer": "globex"},
            {"name": "loner", "key": LONER_KEY, "tools": ["billing/*"]},
        ],
    }


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    workdir = tmp_path_factory.mktemp("approval-people")
    policies = documented_policy("refund-above-100")
    async with refund_gateway(workdir, _config(workdir), SECRETS, policies, "the refund example") as gw:
        yield gw


async def _token(gateway: Gateway, name: str, *roles: dict[str, Any], user_id: str | None = None) -> str:
    assert gateway.admin is not None
    return await principal_token(gateway.admin, gateway.admin_token, name, *roles, kind="person", user_id=user_id)


@pytest.fixture(scope="module")
async def fran(gateway: Gateway) -> str:
    """An approver of every tenant, who has nothing to do with the calls."""
    return await _token(gateway, "fran@example.com", {"role": "call_approver"})


@pytest.fixture(scope="module")
async def samantha(gateway: Gateway) -> str:
    """An approver who signs in as user `sam`, whom the support key acts for."""
    return await _token(gateway, "samantha@example.com", {"role": "call_approver"}, user_id="sam")


def _as(gateway: Gateway, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gateway.admin_api, headers={"Authorization": f"Bearer {token}"}, timeout=10)


async def _parked(gateway: Gateway, key: str, arguments: dict[str, Any]) -> dict[str, Any]:
    async with gateway.client(key) as client:
        with pytest.raises(MCPError) as parked:
            await client.call_tool("billing__refund", arguments)
    assert parked.value.code == JSONRPC_CODE[ErrorKind.APPROVAL_REQUIRED], parked.value.message
    approval: dict[str, Any] = parked.value.data["approval"]
    return approval


async def _state(gateway: Gateway, fran: str, approval_id: str) -> str:
    async with _as(gateway, fran) as http:
        return str((await http.get(f"/approvals/{approval_id}")).json()["state"])


async def test_an_approver_who_is_the_calling_keys_user_cannot_approve_her_refund(
    gateway: Gateway, fran: str, samantha: str
) -> None:
    """She signs in as user `sam`, whom the support key acts for: her name is neither the key's nor
    the user's, yet the refund is hers."""
    approval = await _parked(gateway, SUPPORT_KEY, {"order": "o-hers", "amount": 4242})
    async with _as(gateway, samantha) as her:
        refused = await her.post(f"/approvals/{approval['id']}/approve", json={"reason": "legit"})
    assert refused.status_code == 403, refused.text
    assert "is user 'sam', whom the calling key acts for: another person decides it" in refused.json()["message"]
    assert await _state(gateway, fran, approval["id"]) == "pending"
    assert "o-hers" not in runs_in(ledger_of(gateway))


async def _parked_once_known(gateway: Gateway, secret: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """`_parked` with a key the admin API just made: retried until ingress knows the key."""
    found: list[dict[str, Any]] = []

    async def parked() -> bool:
        try:
            found.append(await _parked(gateway, secret, arguments))
        except (AssertionError, MCPError, httpx.HTTPError):
            return False
        return True

    await poll_until(parked, "the new key's call to be parked")  # type: ignore[arg-type]  # T is bool
    return found[0]


async def test_the_approver_who_created_or_rotated_the_calling_key_cannot_approve_its_calls(
    gateway: Gateway, fran: str
) -> None:
    manager = ({"role": "call_approver"}, {"role": "key_manager", "customer_id": "acme"})
    kim_token, rita_token = [await _token(gateway, name, *manager) for name in ("kim@example.com", "rita@example.com")]
    async with _as(gateway, kim_token) as kim, _as(gateway, rita_token) as rita, _as(gateway, fran) as other:
        made = await kim.post(
            "/keys", json={"name": "kims-agent", "grants": ["billing/*"], "team_id": "support", "customer_id": "acme"}
        )
        assert made.status_code in (200, 201), made.text
        assert made.json()["key"]["created_by"] == "kim@example.com"
        approval = await _parked_once_known(gateway, made.json()["secret"], {"order": "o-kim", "amount": 4242})
        refused = await kim.post(f"/approvals/{approval['id']}/approve", json={"reason": "my agent"})
        assert refused.status_code == 403 and "was shown the calling key's secret" in refused.json()["message"]
        approved = await other.post(f"/approvals/{approval['id']}/approve", json={"reason": "ok"})
        assert approved.status_code == 200 and approved.json()["decided_by"] == "fran@example.com"

        # rotated by rita: she holds the secret now, kim's is revoked
        rotated = await rita.post(f"/keys/{made.json()['key']['id']}/rotate")
        assert rotated.status_code in (200, 201) and rotated.json()["key"]["created_by"] == "rita@example.com"
        second = await _parked_once_known(gateway, rotated.json()["secret"], {"order": "o-rita", "amount": 4343})
        refused = await rita.post(f"/approvals/{second['id']}/approve", json={"reason": "my agent now"})
        assert refused.status_code == 403 and "was shown the calling key's secret" in refused.json()["message"]
        assert (await kim.post(f"/approvals/{second['id']}/deny", json={"reason": "not ours"})).status_code == 200


async def test_a_scoped_approver_sees_and_decides_only_its_tenants_calls(gateway: Gateway, fran: str) -> None:
    acme = await _parked(gateway, SUPPORT_KEY, {"order": "o-acme", "amount": 500})
    globex = await _parked(gateway, GLOBEX_KEY, {"order": "o-globex", "amount": 600})
    loner = await _parked(gateway, LONER_KEY, {"order": "o-loner", "amount": 700})
    token = await _token(gateway, "gus@example.com", {"role": "call_approver", "customer_id": "globex"})
    async with _as(gateway, token) as gus:
        listed = {a["id"] for a in (await gus.get("/approvals")).json()}
        assert globex["id"] in listed and not listed & {acme["id"], loner["id"]}
        for other in (acme, loner):  # another tenant's, or no tenant's: not there at all
            assert (await gus.get(f"/approvals/{other['id']}")).status_code == 404
            attempt = await gus.post(f"/approvals/{other['id']}/approve", json={"reason": "not mine"})
            assert attempt.status_code == 404, attempt.text
        shown = (await gus.get(f"/approvals/{globex['id']}")).json()
        assert (shown["customer_id"], shown["team_id"], shown["arguments"]) == (
            "globex",
            "gsupport",
            {"order": "o-globex", "amount": 600},
        )
        approved = await gus.post(f"/approvals/{globex['id']}/approve", json={"reason": "our customer"})
    assert approved.status_code == 200, approved.text
    team = await _token(gateway, "tia@example.com", {"role": "call_approver", "team_id": "support"})
    async with _as(gateway, team) as tia:
        assert {a["id"] for a in (await tia.get("/approvals")).json()} & {acme["id"], globex["id"]} == {acme["id"]}
        assert (await tia.post(f"/approvals/{acme['id']}/deny", json={"reason": "no"})).status_code == 200
    assert await _state(gateway, fran, loner["id"]) == "pending"


async def _cli(*args: str, env: Mapping[str, str | None]) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)


@pytest.fixture
def owners_stack(gateway: Gateway, tmp_path: Path) -> Iterator[Path]:
    """A data dir whose stack.json holds the owner's token, as a running `bastion up` leaves one (its pid
    a live process named bastion): the CLI must never use that token."""
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "bastion"])
    try:
        stack = {"pid": stand_in.pid, "admin_url": gateway.admin_api, "admin_token": gateway.admin_token}
        (tmp_path / "stack.json").write_text(json.dumps(stack))
        yield tmp_path
    finally:
        stand_in.kill()
        stand_in.wait()


async def test_the_cli_decides_only_as_the_principal_of_its_token(
    gateway: Gateway, fran: str, samantha: str, owners_stack: Path
) -> None:
    approval = await _parked(gateway, SUPPORT_KEY, {"order": "o-cli", "amount": 120})
    where = ("--data-dir", str(owners_stack))
    tempted = {"BASTION_TOKEN": None, "BASTION_ADMIN_TOKEN": gateway.admin_token, "BASTION_PRINCIPAL": "carol"}
    for command in ("approve", "deny"):
        refused = await _cli("approvals", command, approval["id"], "--reason", "owner", *where, env=tempted)
        assert refused.exit_code == 2 and "--token" in refused.output and "BASTION_TOKEN" in refused.output
    assert await _state(gateway, fran, approval["id"]) == "pending"

    as_fran = {"BASTION_TOKEN": fran, "BASTION_ADMIN_TOKEN": gateway.admin_token, "BASTION_PRINCIPAL": "carol"}
    listed = await _cli("approvals", "list", *where, env=as_fran)
    assert listed.exit_code == 0 and approval["id"] in listed.output, listed.output
    shown = await _cli("approvals", "show", approval["id"], *where, env=as_fran)
    assert '{"amount": 120, "order": "o-cli"}' in shown.output
    own = await _cli(
        "approvals", "approve", approval["id"], "--reason", "mine", "--token", samantha, *where, env=as_fran
    )
    assert own.exit_code == 1 and "another person decides it" in own.output
    approved = await _cli("approvals", "approve", approval["id"], "--reason", "checked", *where, env=as_fran)
    assert approved.exit_code == 0 and "as fran@example.com" in approved.output, approved.output
    async with gateway.client(SUPPORT_KEY) as client:
        ran = await client.call_tool("billing__refund", {"order": "o-cli", "amount": 120})
    assert "".join(getattr(b, "text", "") for b in ran.content) == "refunded 120 EUR on o-cli"
    rows = await kind_rows_when(gateway.nats_url, "admin", lambda rs: any(r.target == approval["id"] for r in rs))
    (decision,) = [r for r in rows if r.target == approval["id"] and r.action == "approval.approve"]
    assert decision.actor == "fran@example.com"  # never "carol", never the owner
