"""A stdio server is a command the executors run as the gateway's user: choosing it is the owner's
(`servers:command`), not an operator's (`servers:write`). Attacked on a real gateway (NATS, Valkey,
policy, an executor that really runs what lands in the servers bucket, the admin service): every path
that writes or starts a server entry, as an operator, is a 403 naming the permission, and the command
never runs (its marker file never appears); an owner's same request runs it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from libs.common.contracts.messages import AuditEvent
from libs.common.runtime.sealing import new_key
from tests.support.admin_api import principal_token
from tests.support.audit_rows import kind_rows_when
from tests.support.gateway import SERVERS, Gateway, gateway_on_own_servers
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

ECHO = {"command": sys.executable, "args": [str(SERVERS / "echo_server.py")], "env": {"API_TOKEN": "tok-0"}}


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    workdir = tmp_path_factory.mktemp("ownercmd")
    config = {"mcpServers": {"owned": ECHO}}
    async with gateway_on_own_servers(workdir, config, admin=True, secrets_key=new_key()) as gw:
        yield gw


@pytest.fixture(scope="module")
async def operator_token(gateway: Gateway) -> str:
    assert gateway.admin is not None
    return await principal_token(gateway.admin, gateway.admin_token, "olga@example.com", {"role": "operator"})


@pytest.fixture
async def operator(gateway: Gateway, operator_token: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {operator_token}"}
    async with httpx.AsyncClient(base_url=gateway.admin_api, headers=headers, timeout=10) as http:
        yield http


@pytest.fixture
async def owner(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.admin_api, headers=gateway.admin_headers, timeout=10) as http:
        yield http


def attack(marker: Path) -> dict[str, Any]:
    """The entry of the attack: a shell writing who it runs as into `marker`."""
    return {"command": "sh", "args": ["-c", f"id > {marker}"]}


def granted(marker: Path) -> dict[str, Any]:
    """The same entry as the owner adds it: its sandbox lets it write the marker's folder, nothing
    else (docs/stdio-sandbox.md), so the marker proves it ran."""
    return {**attack(marker), "sandbox": {"write": [str(marker.parent)]}}


def refused(answer: httpx.Response) -> None:
    assert answer.status_code == 403, answer.text
    body = answer.json()
    assert body["permission"] == "servers:command", body
    assert "lacks the permission 'servers:command'" in body["message"], body
    assert "runs as the gateway's user" in body["message"], body


async def owner_runs_a_command(owner: httpx.AsyncClient, name: str, marker: Path) -> None:
    """The owner's own command: proof that the executor here runs what lands in the bucket, so a
    marker missing after a refusal means the refusal stopped it, not a stack that runs nothing."""
    made = await owner.post("/servers", json={"name": name, "config": granted(marker)})
    assert made.status_code == 201, made.text
    await poll_until(marker.exists, f"the owner's command {name!r} to run")
    assert (await owner.delete(f"/servers/{name}")).status_code == 204


async def test_the_exact_attack_is_refused_and_never_runs(
    operator: httpx.AsyncClient, owner: httpx.AsyncClient, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    refused(await operator.post("/servers", json={"name": "opcmd", "config": attack(marker)}))
    # the same entry in every form a create takes: an explicit type, an imported client's extras
    refused(await operator.post("/servers", json={"name": "opcmd", "config": {"type": "stdio", **attack(marker)}}))
    assert (await owner.get("/servers/opcmd")).status_code == 404
    await owner_runs_a_command(owner, "ownercmd", tmp_path / "owner-marker")
    assert not marker.exists()


async def test_a_refused_command_is_audited_under_the_operators_name(
    gateway: Gateway, operator: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Refusals you can see: who tried to run a command, from where, and which permission stopped it."""
    refused(await operator.post("/servers", json={"name": "audited", "config": attack(tmp_path / "marker")}))

    def found(rows: list[AuditEvent]) -> bool:
        return any(row.action == "refused" and row.tool == "servers:command" for row in rows)

    rows = [row for row in await kind_rows_when(gateway.nats_url, "admin", found) if row.action == "refused"]
    row = next(row for row in rows if row.tool == "servers:command")
    assert row.status == "denied" and row.error_kind == "forbidden"
    assert row.actor_role is not None and "operator" in row.actor_role
    assert row.target == "POST /admin/v1/servers" and row.actor_address
    assert "lacks the permission 'servers:command'" in (row.error or "")


async def test_an_operator_cannot_change_what_a_stdio_server_runs(
    operator: httpx.AsyncClient, owner: httpx.AsyncClient, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    shown = (await operator.get("/servers/owned")).json()["config"]
    assert shown["env"] == {"API_TOKEN": "***"}
    changes = {
        "args": {**shown, "args": ["-c", f"import os; open({str(marker)!r}, 'w')"]},
        "command": {**shown, **attack(marker)},
        "env": {**shown, "env": {"API_TOKEN": "tok-1", "PYTHONSTARTUP": str(marker)}},
        "cwd": {**shown, "cwd": str(tmp_path)},
    }
    for field, config in changes.items():
        answer = await operator.put("/servers/owned", json={"config": config})
        refused(answer)
        assert repr(field) in answer.json()["message"], answer.text
    # no partial update exists to go around the replace
    assert (await operator.patch("/servers/owned", json={"config": {"args": ["x"]}})).status_code == 405
    stored = (await owner.get("/servers/owned")).json()["config"]
    assert stored["args"] == ECHO["args"] and stored["command"] == ECHO["command"] and stored.get("cwd") is None
    # what does not choose what runs stays an operator's: masked env sent back as read, a timeout, disabled
    kept = await operator.put("/servers/owned", json={"config": {**shown, "timeout": 30, "tools": ["echo"]}})
    assert kept.status_code == 200, kept.text
    await owner_runs_a_command(owner, "ownercmd2", tmp_path / "owner-marker")
    assert not marker.exists()


async def test_an_operator_cannot_turn_a_remote_server_into_a_command(
    operator: httpx.AsyncClient, owner: httpx.AsyncClient, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    remote = {"url": "http://127.0.0.1:9/mcp", "disabled": True}
    made = await operator.post("/servers", json={"name": "remote", "config": remote})
    assert made.status_code == 201, made.text  # a remote server is an operator's to add
    refused(await operator.put("/servers/remote", json={"config": attack(marker)}))
    refused(await operator.put("/servers/remote", json={"config": {**remote, "env": {"LD_PRELOAD": str(marker)}}}))
    assert (await owner.get("/servers/remote")).json()["config"]["command"] is None
    # and back: a command the owner set is not an operator's to replace by a URL of their choice either
    assert (await owner.put("/servers/remote", json={"config": granted(marker)})).status_code == 200
    await poll_until(marker.exists, "the owner's conversion to run")
    refused(await operator.put("/servers/remote", json={"config": remote}))
    # removing one runs nothing: servers:write
    assert (await operator.delete("/servers/remote")).status_code == 204


async def test_a_configuration_import_of_a_command_needs_the_owner(
    operator: httpx.AsyncClient, owner: httpx.AsyncClient, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    for text in (
        yaml.safe_dump({"mcpServers": {"imported": attack(marker)}}),  # `bastion config apply`'s YAML
        json.dumps({"mcpServers": {"imported": attack(marker)}}),  # a client's mcpServers JSON
    ):
        plan = await operator.post("/config/plan", json={"yaml": text})
        assert plan.status_code == 200, plan.text
        assert plan.json()["needs_command"] == {"imported": ["command", "args"]}
        assert plan.json()["sections"]["servers"]["added"] == ["imported"]
        answer = await operator.post("/config/apply", json={"yaml": text})
        refused(answer)
        assert "mcpServers.imported" in answer.json()["message"]
    assert (await owner.get("/servers/imported")).status_code == 404
    # changing a stored stdio server's args through a file
    changed = {"owned": {**ECHO, "env": {"API_TOKEN": "***"}, "args": ["-c", f"open({str(marker)!r}, 'w')"]}}
    refused(await operator.post("/config/apply", json={"yaml": yaml.safe_dump({"mcpServers": changed})}))
    # an export holding the stdio server as stored (secrets masked) is an operator's to re-import
    same = {"mcpServers": {"owned": (await owner.get("/servers/owned")).json()["config"]}}
    again = await operator.post("/config/apply", json={"yaml": yaml.safe_dump(same)})
    assert again.status_code == 200 and again.json()["needs_command"] == {}, again.text
    # the owner's plan says the same, and its apply writes it
    text = yaml.safe_dump({"mcpServers": {"imported": granted(marker)}})
    applied = await owner.post("/config/apply", json={"yaml": text})
    # its sandbox is the owner's to set too
    assert applied.status_code == 200
    assert applied.json()["needs_command"] == {"imported": ["command", "args", "sandbox"]}
    await poll_until(marker.exists, "the owner's imported command to run")
    assert (await owner.delete("/servers/imported")).status_code == 204


async def test_the_consoles_test_of_a_command_is_the_owners(
    operator: httpx.AsyncClient, owner: httpx.AsyncClient, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    refused(await operator.post("/console/servers/test", json={"name": "probe", "config": attack(marker)}))
    refused(await operator.post("/console/servers/test", json={"name": "owned", "config": attack(marker)}))
    as_owner = await owner.post("/console/servers/test", json={"name": "probe", "config": attack(marker)})
    assert as_owner.status_code == 422 and as_owner.json()["error"] == "not_testable", as_owner.text
    remote = {"name": "probe", "config": {"url": "http://127.0.0.1:9/"}}
    assert (await operator.post("/console/servers/test", json=remote)).status_code != 403  # still an operator's
    assert not marker.exists()


async def test_bastion_servers_add_as_an_operator_is_refused(
    gateway: Gateway, operator_token: str, owner: httpx.AsyncClient, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    argv = ["servers", "add", "--admin-url", gateway.admin_api, "--admin-token", operator_token]
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "cli", *argv, "clicmd", "--", "sh", "-c", f"id > {marker}"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    said = " ".join(out.decode().split())
    assert proc.returncode == 1, said
    assert "servers:command" in said and "[HTTP 403]" in said, said
    assert (await owner.get("/servers/clicmd")).status_code == 404
    await owner_runs_a_command(owner, "ownercmd3", tmp_path / "owner-marker")
    assert not marker.exists()


async def test_no_custom_role_may_hold_servers_command(owner: httpx.AsyncClient) -> None:
    listed = {p["name"]: p for p in (await owner.get("/permissions")).json()}
    assert listed["servers:command"]["owner_only"] and not listed["servers:write"]["owner_only"]
    made = await owner.post("/roles", json={"name": "shell", "permissions": ["servers:write", "servers:command"]})
    assert made.status_code == 422, made.text
    assert "'servers:command' is the owner role's alone" in made.json()["message"]
    assert (await owner.get("/roles/shell")).status_code == 404
    made = await owner.post("/roles", json={"name": "release", "permissions": ["servers:write"]})
    assert made.status_code == 201, made.text
    grown = await owner.put("/roles/release", json={"permissions": ["servers:write", "servers:command"]})
    assert grown.status_code == 422 and "owner role's alone" in grown.json()["message"], grown.text
    assert (await owner.get("/roles/release")).json()["permissions"] == ["servers:write"]


async def test_an_openapi_document_on_the_executors_disk_is_the_owners_to_name(
    operator: httpx.AsyncClient, owner: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A local `openapi.document` is read with every right of the executor's box: an operator naming
    one could learn whether any file it can read exists (and parts of what it holds) from the
    error. Refused to an operator, in every form a write takes; a URL stays the operator's."""
    local = {"openapi": {"document": "/etc/hostname", "base_url": "https://api.example"}, "disabled": True}
    answer = await operator.post("/servers", json={"name": "oracle", "config": local})
    refused(answer)
    assert "'openapi.document'" in answer.json()["message"], answer.text
    assert (await owner.get("/servers/oracle")).status_code == 404
    remote = {"openapi": {"document": "https://api.example/openapi.json"}, "disabled": True}
    made = await operator.post("/servers", json={"name": "spec", "config": remote})
    assert made.status_code == 201, made.text
    refused(await operator.put("/servers/spec", json={"config": local}))
    assert (await owner.put("/servers/spec", json={"config": local})).status_code == 200
    assert (await operator.delete("/servers/spec")).status_code == 204
