"""Tool groups, customers, teams, users and servers through the admin REST API, each test on an admin
service of its own (they list everything): create, read, PATCH/PUT, delete, the references between
them, and a server's stored secret kept behind its mask."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from nats.js.errors import KeyNotFoundError

from libs.common.bus.nats import kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.messages import CatalogTool, ServerCatalog
from tests.support.admin_api import ECHO
from tests.support.admin_api_checks import assert_error, js

pytestmark = pytest.mark.integration

__all__ = ["js"]  # a fixture, shared


# ---------------------------------------------------------------- groups, customers, teams, users


async def test_groups_crud(api: httpx.AsyncClient, js: Any) -> None:
    created = await api.post("/groups", json={"id": "readers", "description": "read-only", "tools": ["notes/list_*"]})
    assert created.status_code == 201, created.text
    assert created.json()["revision"] > 0 and created.json()["created_at"] > 0
    assert [g["id"] for g in (await api.get("/groups")).json()] == ["readers"]
    assert (await api.get("/groups/readers")).json()["description"] == "read-only"

    patched = (await api.patch("/groups/readers", json={"tools": ["notes/*"]})).json()
    assert (patched["description"], patched["tools"]) == ("read-only", ["notes/*"]), "PATCH keeps absent fields"
    replaced = (await api.put("/groups/readers", json={"tools": ["echo/echo"]})).json()
    assert (replaced["description"], replaced["tools"]) == ("", ["echo/echo"]), "PUT resets absent fields"
    assert replaced["created_at"] == created.json()["created_at"] and replaced["updated_at"] >= patched["updated_at"]
    assert_error(await api.patch("/groups/readers", json={"tools": None}), 422, "body.tools")
    assert_error(await api.patch("/groups/readers", json={"tools": ["bad"]}), 422, "body.tools[0]")
    assert_error(await api.patch("/groups/readers", json={"id": "other"}), 422, "body.id")

    kv = await kv_bucket(js, subjects.KV_POLICY)
    assert json.loads((await kv.get("group.readers")).value)["tools"] == ["echo/echo"]

    key = (await api.post("/keys", json={"name": "reader", "groups": ["readers"]})).json()["key"]
    assert_error(await api.delete("/groups/readers"), 409, "still used by key 'reader'")
    await api.post(f"/keys/{key['id']}/revoke")
    assert (await api.delete("/groups/readers")).status_code == 204, "revoked keys do not hold a group"
    assert_error(await api.get("/groups/readers"), 404)
    with pytest.raises(KeyNotFoundError):
        await kv.get("group.readers")


async def test_customers_teams_users_and_references(api: httpx.AsyncClient) -> None:
    assert_error(
        await api.post("/teams", json={"id": "pay", "name": "Payments", "customer_id": "acme"}),
        422,
        "body.customer_id",
        "no customer has this id",
    )
    assert (
        await api.post("/customers", json={"id": "acme", "name": "Acme", "budget": {"limit_usd": 100}})
    ).status_code == 201
    assert (await api.post("/teams", json={"id": "pay", "name": "Payments", "customer_id": "acme"})).status_code == 201
    user = await api.post("/users", json={"id": "ann", "name": "Ann", "team_id": "pay", "rate_limit": {"requests": 10}})
    assert user.status_code == 201 and user.json()["team_id"] == "pay"
    assert_error(await api.patch("/users/ann", json={"team_id": "nope"}), 422, "body.team_id", "no team has this id")
    assert (await api.patch("/users/ann", json={"team_id": None})).json()["team_id"] is None
    assert_error(await api.delete("/customers/acme"), 409, "team 'pay'")
    assert (await api.delete("/customers/acme", params={"force": "true"})).status_code == 204
    assert [t["customer_id"] for t in (await api.get("/teams")).json()] == ["acme"], "force leaves a dangling link"
    assert (await api.patch("/teams/pay", json={"name": "Pay"})).status_code == 200, "unrelated edits still work"
    assert_error(await api.put("/teams/pay", json={"customer_id": None}), 422, "body.name", "Field required")


# ---------------------------------------------------------------- servers


async def test_servers_round_trip(api: httpx.AsyncClient, js: Any) -> None:
    added = await api.post("/servers", json={"name": "echo", "config": ECHO})
    assert added.status_code == 201, added.text
    assert added.json()["status"] == "pending" and added.json()["config"]["env"] == {"API_TOKEN": "***"}
    await api.post(
        "/servers", json={"name": "remote", "config": {"url": "https://mcp.example.com/mcp", "disabled": True}}
    )

    catalog = await kv_bucket(js, subjects.KV_CATALOG)
    tool = CatalogTool(tool="echo", definition={"name": "echo", "inputSchema": {"type": "object"}})
    await catalog.put(
        "echo", ServerCatalog(server="echo", status="ready", tools=[tool, tool]).model_dump_json().encode()
    )
    listing = {s["name"]: s for s in (await api.get("/servers")).json()}
    assert (listing["echo"]["status"], listing["echo"]["tools"]) == ("ready", 2)
    assert listing["remote"]["status"] == "disabled"
    assert "upstream-secret-value" not in (await api.get("/servers")).text
    await catalog.put(
        "echo", ServerCatalog(server="echo", status="unavailable", error="spawn failed").model_dump_json().encode()
    )
    echo = (await api.get("/servers/echo")).json()
    assert (echo["status"], echo["error"], echo["tools"]) == ("unavailable", "spawn failed", 0)

    # a PUT of the masked config as read keeps the stored secret; a new value replaces it
    masked = {**echo["config"], "timeout": 30}
    assert (await api.put("/servers/echo", json={"config": masked})).status_code == 200
    servers = await kv_bucket(js, subjects.KV_SERVERS)
    stored = json.loads((await servers.get("echo")).value)
    assert stored["config"]["env"] == {"API_TOKEN": "upstream-secret-value"} and stored["config"]["timeout"] == 30
    # what runs is where the env goes: changing it with the secret left masked is refused (secret_binding)
    moved = {**masked, "args": ["echo_server.py", "--verbose"]}
    assert_error(await api.put("/servers/echo", json={"config": moved}), 422, "env 'API_TOKEN'")
    await api.put("/servers/echo", json={"config": {**moved, "env": {"API_TOKEN": "rotated"}}})
    stored = json.loads((await servers.get("echo")).value)
    assert stored["config"]["env"] == {"API_TOKEN": "rotated"}
    assert stored["config"]["args"] == ["echo_server.py", "--verbose"]

    assert_error(await api.post("/servers", json={"name": "bad name", "config": ECHO}), 422, "body.name")
    assert_error(
        await api.post("/servers", json={"name": "x", "config": {"command": "a", "url": "http://b"}}),
        422,
        "body.config",
        "not both",
    )
    assert (await api.delete("/servers/echo")).status_code == 204
    assert [s["name"] for s in (await api.get("/servers")).json()] == ["remote"]
    assert_error(await api.delete("/servers/echo"), 404)
