"""Importing a configuration file through the admin API (`POST /admin/v1/config/plan` and `/apply`)
against a real admin service on a real NATS: a plan writes nothing, an apply adds and changes what the
file names and deletes nothing, a refused file changes nothing, each section needs its write
permission, and hostile input (huge, malformed, YAML bombs, unknown fields) is a 4xx naming the problem."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import nats
import pytest
import yaml
from nats.aio.msg import Msg

from libs.common.contracts import subjects
from libs.common.contracts.messages import AuditEvent, audit_events
from services.admin.service import AdminService
from tests.support.admin_api import base_url, principal_token
from tests.support.adminapi_stack import ModuleAdmin, module_admin_fixture

pytestmark = pytest.mark.integration

UPSTREAM_SECRET = "Bearer upstream-secret-for-import"
KEY_SHA = hashlib.sha256(b"bk_the-ci-key-secret").hexdigest()


def config_file(description: str = "operations") -> dict[str, Any]:
    return {
        "mcpServers": {
            "remote": {"url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": UPSTREAM_SECRET}, "disabled": True}
        },
        "groups": [{"id": "ops", "description": description, "tools": ["remote/*"]}],
        "customers": [{"id": "acme", "name": "Acme", "groups": ["ops"]}],
        "teams": [{"id": "payments", "name": "Payments", "customer_id": "acme"}],
        "users": [{"id": "ana", "name": "Ana", "team_id": "payments"}],
        "keys": [{"name": "ci", "key_sha256": KEY_SHA, "tools": ["remote/*"], "team": "payments"}],
        "llm": {"providers": {"local": {"base_url": "http://127.0.0.1:9/v1", "models": ["m1"]}}},
        "gateway": {"max_body_bytes": 1000000},
    }


def text(config: dict[str, Any]) -> dict[str, str]:
    return {"yaml": yaml.safe_dump(config)}


def names(plan: dict[str, Any], what: str) -> dict[str, list[str]]:
    return {section: found[what] for section, found in plan["sections"].items() if found[what]}


async def as_role(admin: AdminService, owner: str, name: str, **binding: str) -> httpx.AsyncClient:
    token = await principal_token(admin, owner, f"{name}@example.com", binding, kind="person")
    return httpx.AsyncClient(base_url=base_url(admin), headers={"Authorization": f"Bearer {token}"}, timeout=10)


# One admin service for the tests whose files are refused: none of them adds a group (the hostile
# input tests check the group list stays empty), and what else they make has names of its own.
refusing = module_admin_fixture("refusing")


@pytest.fixture
async def refusing_api(refusing: ModuleAdmin) -> AsyncIterator[httpx.AsyncClient]:
    async with refusing.client() as client:
        yield client


@pytest.fixture
async def imports(nats_url: str) -> AsyncIterator[asyncio.Queue[AuditEvent]]:
    """The `config.import` audit events, read off the audit subjects as any consumer would."""
    client = await nats.connect(nats_url)
    found: asyncio.Queue[AuditEvent] = asyncio.Queue()

    async def on_message(msg: Msg) -> None:
        for event in audit_events(msg.data):
            if event.action == "config.import":
                found.put_nowait(event)

    await client.subscribe(f"{subjects.AUDIT_EVENTS}.>", cb=on_message)
    await client.flush()
    yield found
    await client.close()


async def test_a_plan_writes_nothing_and_an_apply_upserts_without_deleting(
    api: httpx.AsyncClient, imports: asyncio.Queue[AuditEvent]
) -> None:
    assert (await api.post("/groups", json={"id": "kept", "tools": []})).status_code == 201

    planned = await api.post("/config/plan", json=text(config_file()))
    assert planned.status_code == 200, planned.text
    plan = planned.json()
    assert names(plan, "added") == {
        "servers": ["remote"],
        "keys": ["ci"],
        "groups": ["ops"],
        "customers": ["acme"],
        "teams": ["payments"],
        "users": ["ana"],
        "llm_providers": ["local"],
    }
    assert plan["ignored"] == ["gateway"] and plan["applied"] is False
    assert [g["id"] for g in (await api.get("/groups")).json()] == ["kept"]  # the plan wrote nothing
    assert (await api.get("/servers/remote")).status_code == 404

    applied = await api.post("/config/apply", json=text(config_file()))
    assert applied.status_code == 200, applied.text
    assert applied.json()["applied"] is True and names(applied.json(), "added") == names(plan, "added")
    assert UPSTREAM_SECRET not in planned.text + applied.text
    assert [g["id"] for g in (await api.get("/groups")).json()] == ["kept", "ops"]  # nothing deleted
    key = (await api.get(f"/keys/{KEY_SHA}")).json()
    assert (key["name"], key["grants"], key["team_id"], key["revoked"]) == ("ci", ["remote/*"], "payments", False)
    assert (await api.get("/teams/payments")).json()["customer_id"] == "acme"
    assert (await api.get("/servers/remote")).json()["config"]["headers"] == {"Authorization": "***"}
    event = await asyncio.wait_for(imports.get(), 30)
    assert (event.kind, event.actor) == ("admin", "test-owner")
    assert json.loads(event.after or "")["sections"]["keys"]["added"] == ["ci"]

    # again, the same file: nothing to do; a changed group and the stored secret kept by `***`
    again = (await api.post("/config/plan", json=text(config_file()))).json()
    assert names(again, "added") == {} and names(again, "changed") == {}
    edited = config_file(description="the on-call tools")
    edited["mcpServers"]["remote"]["headers"] = {"Authorization": "***"}
    changed = (await api.post("/config/apply", json=text(edited))).json()
    assert names(changed, "changed") == {"groups": ["ops"]}
    assert (await api.get("/groups/ops")).json()["description"] == "the on-call tools"
    assert names((await api.post("/config/plan", json=text(config_file()))).json(), "changed") == {
        "groups": ["ops"]  # the literal secret equals the stored one: only the description differs
    }


async def test_a_variable_is_never_expanded_through_the_api_and_a_refused_file_writes_nothing(
    refusing_api: httpx.AsyncClient,
) -> None:
    api = refusing_api
    config = config_file()
    config["mcpServers"]["remote"]["headers"] = {"Authorization": "${BASTION_SECRET_REMOTE_HEADERS_AUTHORIZATION}"}
    for route in ("/config/plan", "/config/apply"):
        refused = await api.post(route, json=text(config))
        assert refused.status_code == 422, refused.text
        message = refused.json()["message"]
        assert "mcpServers.remote.headers.Authorization is a ${VAR}" in message and "never from the API" in message
    assert (await api.get("/groups/ops")).status_code == 404  # checked whole before any write
    assert (await api.get("/servers/remote")).status_code == 404

    unknown = config_file()
    unknown["keys"][0]["team"] = "nowhere"
    refused = await api.post("/config/apply", json=text(unknown))
    assert refused.status_code == 422 and "keys.ci.team_id: a team that is neither" in refused.json()["message"]
    assert "nowhere" not in refused.text  # the field and the rule, never the refused value
    assert (await api.get("/groups/ops")).status_code == 404

    masked = config_file()
    masked["mcpServers"]["remote"]["headers"] = {"Authorization": "***"}  # nothing stored to keep
    refused = await api.post("/config/apply", json=text(masked))
    assert refused.status_code == 422 and "keeps a stored value" in refused.json()["message"]

    assert (await api.post("/keys", json={"name": "ci"})).status_code == 201  # another key holds the name
    refused = await api.post("/config/apply", json=text(config_file()))
    assert refused.status_code == 409 and "an active key named 'ci'" in refused.json()["message"]
    assert (await api.get("/groups/ops")).status_code == 404


async def test_each_section_needs_its_write_permission(refusing: ModuleAdmin) -> None:
    admin, owner_token = refusing.admin, refusing.owner_token
    servers_only = text({"mcpServers": config_file()["mcpServers"]})
    with_keys = text({"keys": config_file()["keys"]})
    async with await as_role(admin, owner_token, "viewer", role="viewer") as viewer:
        refused = await viewer.post("/config/plan", json=servers_only)
        assert refused.status_code == 403 and refused.json()["permission"] == "servers:write"
    async with await as_role(admin, owner_token, "operator", role="operator") as operator:
        assert (await operator.post("/config/plan", json=servers_only)).status_code == 200
        refused = await operator.post("/config/apply", json=with_keys)
        assert refused.status_code == 403 and refused.json()["permission"] == "keys:write"
    async with httpx.AsyncClient(base_url=base_url(admin), headers={"Authorization": f"Bearer {owner_token}"}) as api:
        assert (await api.post("/teams", json={"id": "payments", "name": "Payments"})).status_code == 201
    async with await as_role(admin, owner_token, "km", role="key_manager", team_id="payments") as manager:
        refused = await manager.post("/config/apply", json=with_keys)  # a team's key manager: not everywhere
        assert refused.status_code == 403 and refused.json()["permission"] == "keys:write"
    async with httpx.AsyncClient(base_url=base_url(admin), headers={"Authorization": f"Bearer {owner_token}"}) as api:
        assert (await api.get(f"/keys/{KEY_SHA}")).status_code == 404


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
)


ROUTES = (
    "llm: {providers: {p: {base_url: 'https://llm.example/v1', models: [m]}},"
    " models: {r: {deployments: [{provider: p, model: u}]}}}"
)
"""A routed model: applied from the owner's file only, never silently dropped from an import."""


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"yaml": "mcpServers: {a: [1,"}, 422, "not valid YAML"),
        ({"yaml": "groups: [{id: \u001f}]"}, 422, "character #x001f is not allowed"),
        ({"yaml": BOMB}, 422, "expands to more than 100000 values"),
        ({"yaml": "mcpServers: &a {x: *a}"}, 422, "contains it"),
        ({"yaml": "[" * 5000 + "]" * 5000}, 422, "nests too deep"),
        ({"yaml": "- just a list"}, 422, "top level must be a mapping"),
        ({"yaml": "bogus: 1"}, 422, "unknown key"),
        ({"yaml": "mcpServers: {a: {url: 'http://127.0.0.1:9/', bogus: 1}}"}, 422, "bogus"),
        ({"yaml": "groups: [{id: ops}, {id: ops}]"}, 422, "used twice"),
        ({"yaml": "", "extra": 1}, 422, "extra"),
        ({"yaml": "a: 1\n" * 120_000}, 422, "yaml"),  # past the field's 512 KiB
        ({"yaml": "#" * (1024 * 1024 + 10)}, 413, "exceeds"),  # past the admin API's body limit
        ({"yaml": ROUTES}, 422, "cannot be imported through the API yet"),
    ],
    ids=[
        "bad-yaml",
        "control-character",
        "bomb",
        "cycle",
        "deep",
        "list",
        "unknown-section",
        "unknown-field",
        "twice",
        "extra",
        "big",
        "huge",
        "routes",
    ],
)
async def test_hostile_input_is_refused_naming_the_problem(
    refusing_api: httpx.AsyncClient, body: dict[str, Any], status: int, says: str
) -> None:
    api = refusing_api
    for route in ("/config/plan", "/config/apply"):
        refused = await api.post(route, json=body)
        assert refused.status_code == status, refused.text
        assert says in refused.text
    assert (await api.get("/groups")).json() == []


async def test_an_import_of_a_key_keeps_who_made_it(api: httpx.AsyncClient) -> None:
    """Who made a key is its history, not configuration a file carries: an exported key applied back
    is unchanged, and its maker is kept (the approval judge refuses the maker the key's calls; a file
    that wiped it would let the maker approve them)."""
    made = await api.post("/keys", json={"name": "made-here", "grants": ["remote/*"]})
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    assert key["created_by"] == "test-owner"
    exported = {"keys": [{"name": "made-here", "key_sha256": key["id"], "tools": ["remote/*"]}]}
    planned = (await api.post("/config/plan", json=text(exported))).json()
    assert names(planned, "changed") == {} and names(planned, "unchanged") == {"keys": ["made-here"]}
    assert (await api.post("/config/apply", json=text(exported))).status_code == 200
    assert (await api.get(f"/keys/{key['id']}")).json()["created_by"] == "test-owner"
