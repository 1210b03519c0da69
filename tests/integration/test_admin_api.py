"""The admin REST API against a real NATS, with the admin service (and an ingress replica, where a
change must arrive) served in-process: every status code it promises, secrets shown once and stored
never, and rotate/revoke as every replica sees them.
Schema-driven requests are in test_admin_api_schema.py."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import nats
import pytest
from fastapi import FastAPI
from nats.js.errors import KeyNotFoundError

from libs.common.bus.nats import kv_bucket
from libs.common.bus.permissions import ADMIN
from libs.common.bus.stores import declare_owned
from libs.common.contracts import subjects
from libs.common.contracts.admin_principals import Principal, RoleBinding
from libs.common.contracts.messages import Caller, CatalogTool, KeyRecord, ServerCatalog
from libs.common.settings import AdminSettings, IngressSettings, StoreSettings
from services.admin.api import AdminStore, Authenticator, admin_router
from services.admin.service import AdminService
from services.ingress.service import IngressService
from tests.support.admin_api import ECHO, base_url
from tests.support.adminapi_stack import ModuleAdmin, module_admin_fixture
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def _bus(nats_url: str) -> AsyncIterator[Any]:
    nc = await nats.connect(nats_url)
    await declare_owned(nc.jetstream(), ADMIN, StoreSettings())
    yield nc.jetstream()
    await nc.close()


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[Any]:
    """The bus as the admin role sees it: its configuration buckets exist (the admin API, their
    owner, declares them when it starts; a test using `AdminStore` alone declares them here)."""
    async with _bus(nats_url) as bus:
        yield bus


# Two admin services for the module, each started once (per-test ones made most of this file's cost).
# `writers`: tests that each write objects under names no other test uses, and assert on those only.
# `readers`: tests that write nothing, so its key list stays empty (the 422 tests check that).
# A test that needs an empty store or lists everything keeps its own `admin`/`api`.


writers = module_admin_fixture("writers")


@pytest.fixture(scope="module")
async def writers_ingress(writers: ModuleAdmin) -> AsyncIterator[IngressService]:
    service = IngressService(IngressSettings(nats_url=writers.nats_url, port=0))
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def writers_api(writers: ModuleAdmin) -> AsyncIterator[httpx.AsyncClient]:
    async with writers.client() as client:
        yield client


@pytest.fixture
async def writers_js(writers: ModuleAdmin) -> AsyncIterator[Any]:
    async with _bus(writers.nats_url) as bus:
        yield bus


readers = module_admin_fixture("readers")


@pytest.fixture
async def readers_api(readers: ModuleAdmin) -> AsyncIterator[httpx.AsyncClient]:
    async with readers.client() as client:
        yield client


def authenticates(service: IngressService, secret: str) -> bool:
    return isinstance(service.keys.authenticate(f"Bearer {secret}"), Caller)


def assert_error(response: httpx.Response, status: int, *says: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "message"}, body
    for text in says:
        assert text in body["message"], body
    return body


# ---------------------------------------------------------------- credentials


async def test_credentials(
    writers: ModuleAdmin, writers_ingress: IngressService, writers_api: httpx.AsyncClient
) -> None:
    owner_token, ingress, api = writers.owner_token, writers_ingress, writers_api
    url = base_url(writers.admin) + "/keys"
    async with httpx.AsyncClient(timeout=10) as anon:
        missing = await anon.get(url)
        assert_error(missing, 401, "Authorization: Bearer")
        assert missing.headers["WWW-Authenticate"].startswith("Bearer")
        assert_error(await anon.get(url, headers={"Authorization": "Basic abc"}), 401)
        wrong = await anon.get(url, headers={"Authorization": f"Bearer {owner_token}x"})
        assert_error(wrong, 401, "not a valid API token")
        assert_error(await anon.get(url, headers={"Authorization": f"Bearer {owner_token[:-1]}"}), 401)
        # the credential is checked before the body is even read
        garbage = await anon.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
        assert_error(garbage, 401)
        huge = await anon.post(
            url, content=b"x" * (2 * 1024 * 1024), headers={"Authorization": f"Bearer {owner_token}"}
        )
        assert_error(huge, 413, "exceeds")

        created = (await api.post("/keys", json={"name": "agent", "grants": ["*"]})).json()
        secret = created["secret"]
        await poll_until(lambda: authenticates(ingress, secret), "the new key in the ingress directory")
        forbidden = await anon.get(url, headers={"Authorization": f"Bearer {secret}"})
        assert_error(forbidden, 403, "virtual key")
        assert secret not in forbidden.text

        await api.post(f"/keys/{created['key']['id']}/revoke")
        await poll_until(lambda: not authenticates(ingress, secret), "the revocation in the ingress directory")
        assert_error(await anon.get(url, headers={"Authorization": f"Bearer {secret}"}), 401)


async def test_without_a_bootstrap_token_or_principal_nothing_is_open(nats_url: str) -> None:
    service = AdminService(AdminSettings(nats_url=nats_url, admin_port=0))
    await service.start()
    try:
        async with httpx.AsyncClient(base_url=base_url(service), timeout=10) as client:
            for method, path in (
                ("GET", "/keys"),
                ("POST", "/groups"),
                ("DELETE", "/servers/x"),
                ("POST", "/principals"),
            ):
                response = await client.request(method, path, headers={"Authorization": "Bearer anything"})
                assert_error(response, 401, "not a valid API token")
            assert_error(await client.get("/keys"), 401)
    finally:
        await service.stop()


async def test_openapi_and_docs_are_served(readers: ModuleAdmin) -> None:
    async with httpx.AsyncClient(base_url=readers.admin.url, timeout=10) as client:
        schema = (await client.get("/openapi.json")).json()
        assert (await client.get("/docs")).status_code == 200
    paths = schema["paths"]
    for path in (
        "/admin/v1/keys",
        "/admin/v1/keys/{key_id}/rotate",
        "/admin/v1/groups/{entity_id}",
        "/admin/v1/servers",
    ):
        assert path in paths, sorted(paths)
    create = paths["/admin/v1/keys"]["post"]
    assert {"201", "401", "403", "409", "422", "503"} <= set(create["responses"])
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


# ---------------------------------------------------------------- keys


async def test_create_key_shows_the_secret_once_and_stores_only_its_hash(
    writers_ingress: IngressService, writers_api: httpx.AsyncClient, writers_js: Any
) -> None:
    ingress, api, js = writers_ingress, writers_api, writers_js
    await api.post("/groups", json={"id": "readers", "tools": ["notes/list_*"]})
    body = {
        "name": "ci",
        "grants": ["echo/*"],
        "groups": ["readers"],
        "budget": {"limit_usd": 5, "period": "day"},
        "rate_limit": {"requests": 60, "per": "minute"},
    }
    response = await api.post("/keys", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    secret, key = created["secret"], created["key"]
    assert secret.startswith("bk_") and key["id"] == hashlib.sha256(secret.encode()).hexdigest()
    assert (key["name"], key["grants"], key["groups"], key["revoked"]) == ("ci", ["echo/*"], ["readers"], False)
    assert key["budget"] == {"limit_usd": 5.0, "period": "day"} and key["revision"] > 0

    kv = await kv_bucket(js, subjects.KV_KEYS)
    entry = await kv.get(key["id"])
    assert secret.encode() not in entry.value
    assert KeyRecord.model_validate_json(entry.value).name == "ci"

    for response in (await api.get("/keys"), await api.get(f"/keys/{key['id']}")):
        assert response.status_code == 200 and secret not in response.text
    assert (await api.get(f"/keys/{key['id']}")).headers["ETag"] == f'"{key["revision"]}"'
    await poll_until(lambda: authenticates(ingress, secret), "the key in the ingress directory")


async def test_no_secret_in_any_list(api: httpx.AsyncClient) -> None:
    secrets = [(await api.post("/keys", json={"name": f"k{i}"})).json()["secret"] for i in range(5)]
    rotated = (await api.get("/keys")).json()[0]["id"]
    secrets.append((await api.post(f"/keys/{rotated}/rotate")).json()["secret"])
    listing = await api.get("/keys")
    assert len(listing.json()) == 6
    for path in ("/keys", "/groups", "/customers", "/teams", "/users", "/servers"):
        text = (await api.get(path)).text
        assert not any(secret in text for secret in secrets), path
        assert "bk_" not in text, path


async def test_key_patch_revoke_delete(writers_api: httpx.AsyncClient, writers_js: Any) -> None:
    api, js = writers_api, writers_js
    key = (await api.post("/keys", json={"name": "svc", "budget": {"limit_usd": 1}})).json()["key"]
    patched = await api.patch(f"/keys/{key['id']}", json={"grants": ["notes/*"], "budget": None, "name": "svc2"})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["grants"], patched.json()["budget"], patched.json()["name"]) == (["notes/*"], None, "svc2")
    assert patched.json()["revision"] > key["revision"]

    revoked = await api.post(f"/keys/{key['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    kv = await kv_bucket(js, subjects.KV_KEYS)
    stored = KeyRecord.model_validate_json((await kv.get(key["id"])).value)
    assert stored.revoked and stored.grants == ["notes/*"], "revocation reflected in KV, nothing else lost"
    again = await api.post(f"/keys/{key['id']}/revoke")
    assert again.status_code == 200 and again.json()["revision"] == revoked.json()["revision"], "idempotent"

    assert (await api.delete(f"/keys/{key['id']}")).status_code == 204
    with pytest.raises(KeyNotFoundError):
        await kv.get(key["id"])
    assert_error(await api.get(f"/keys/{key['id']}"), 404, key["id"])


async def test_rotate(writers_ingress: IngressService, writers_api: httpx.AsyncClient, writers_js: Any) -> None:
    ingress, api, js = writers_ingress, writers_api, writers_js
    await api.post("/groups", json={"id": "ops"})
    old = (
        await api.post(
            "/keys", json={"name": "bot", "grants": ["echo/*"], "groups": ["ops"], "rate_limit": {"requests": 5}}
        )
    ).json()
    await poll_until(lambda: authenticates(ingress, old["secret"]), "the old key")
    response = await api.post(f"/keys/{old['key']['id']}/rotate")
    assert response.status_code == 201, response.text
    new = response.json()
    assert new["secret"] != old["secret"] and new["key"]["id"] != old["key"]["id"]
    for field in ("name", "grants", "groups", "rate_limit"):
        assert new["key"][field] == old["key"][field], field
    assert new["key"]["revoked"] is False

    kv = await kv_bucket(js, subjects.KV_KEYS)
    assert KeyRecord.model_validate_json((await kv.get(old["key"]["id"])).value).revoked
    await poll_until(lambda: authenticates(ingress, new["secret"]), "the new key in the ingress directory")
    await poll_until(lambda: not authenticates(ingress, old["secret"]), "the old key refused")
    assert_error(await api.post(f"/keys/{old['key']['id']}/rotate"), 409, "revoked")


async def test_rotate_leaves_a_consistent_state_when_the_revoke_fails(js: Any) -> None:
    store = AdminStore(js, authorize=False)  # the owner's side: no request, no principal
    _, old = await store.create_key(KeyRecord(id="", name="fragile", grants=["*"]))

    async def failing_update(*_args: Any, **_kw: Any) -> int:
        raise ConnectionError("NATS went away between the two writes")

    store.keys.update = failing_update  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await store.rotate_key(old.value.id)
    records = [v.value for _, v in await store.keys.list()]
    assert [(r.id, r.revoked) for r in records] == [(old.value.id, False)], "the old key works, no new key is left"


# ---------------------------------------------------------------- validation, 404, 409


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({}, "body.name", "Field required"),
        ({"name": ""}, "body.name", "at least 1 character"),
        ({"name": "x", "grants": ["nope"]}, "body.grants[0]", "must look like 'server/tool'"),
        ({"name": "x", "grant": ["*"]}, "body.grant", "Extra inputs"),
        ({"name": "x", "budget": {"limit_usd": -1}}, "body.budget.limit_usd", "greater than or equal to 0"),
        ({"name": "x", "rate_limit": {"requests": 1, "per": "fortnight"}}, "body.rate_limit.per", "'minute'"),
        ({"name": "x", "groups": ["Bad Slug"]}, "body.groups[0]", "match pattern"),
        ({"name": "x", "groups": ["missing"]}, "body.groups[0]", "no tool group has this id"),
        ({"name": "x", "user_id": "ghost"}, "body.user_id", "no user has this id"),
        ({"name": "x", "team_id": "t", "customer_id": "c"}, "body.team_id", "no team has this id (and 1 more"),
    ],
)
async def test_invalid_key_bodies_are_422_naming_the_field(
    readers_api: httpx.AsyncClient, body: dict[str, Any], field: str, says: str
) -> None:
    error = assert_error(await readers_api.post("/keys", json=body), 422, field, says)
    assert error["detail"][0]["loc"][0] == "body" and "input" not in error["detail"][0]
    assert (await readers_api.get("/keys")).json() == [], "nothing was written"


async def test_malformed_json_and_if_match(writers_api: httpx.AsyncClient) -> None:
    api = writers_api
    response = await api.post("/groups", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(response, 422, "body")
    await api.post("/groups", json={"id": "g"})
    assert_error(await api.patch("/groups/g", json={}, headers={"If-Match": "yesterday"}), 422, "If-Match")


async def test_validation_errors_never_echo_upstream_credentials(readers_api: httpx.AsyncClient) -> None:
    api = readers_api
    bad = {"name": "leaky", "config": {"url": "ftp://x", "headers": {"Authorization": "Bearer upstream-secret-value"}}}
    response = await api.post("/servers", json=bad)
    assert_error(response, 422, "body.config", "http://")
    assert "upstream-secret-value" not in response.text


async def test_unknown_ids_are_404(readers_api: httpx.AsyncClient) -> None:
    api = readers_api
    missing = "0" * 64
    for method, path in [
        ("GET", f"/keys/{missing}"),
        ("PATCH", f"/keys/{missing}"),
        ("POST", f"/keys/{missing}/revoke"),
        ("POST", f"/keys/{missing}/rotate"),
        ("DELETE", f"/keys/{missing}"),
        ("GET", "/keys/not-a-hash"),
        ("GET", "/groups/nope"),
        ("PATCH", "/groups/nope"),
        ("PUT", "/customers/nope"),
        ("DELETE", "/teams/nope"),
        ("GET", "/users/nope"),
        ("GET", "/servers/nope"),
        ("PUT", "/servers/nope"),
        ("DELETE", "/servers/nope"),
    ]:
        body = {"/servers": {"config": {"url": "http://x/mcp"}}, "/groups/": {"tools": []}}.get(path[:8], {"name": "n"})
        response = await api.request(method, path, json=body if method in ("PATCH", "PUT") else None)
        assert_error(response, 404, "nope" if "nope" in path else "key")


async def test_what_no_route_takes_is_an_error_body_too(readers_api: httpx.AsyncClient) -> None:
    # a line break is what a `{name:path}` parameter cannot hold: the router refuses it, no route runs
    response = await readers_api.get("/tools/echo/a%0Ab/pin")
    assert assert_error(response, 404, "no such route", "/pin")["error"] == "not_found"
    assert assert_error(await readers_api.get("/no-such-thing"), 404)["error"] == "not_found"
    response = await readers_api.request("PATCH", "/permissions")
    assert assert_error(response, 405, "that method")["error"] == "method_not_allowed"
    assert response.headers["allow"]


async def test_duplicates_are_409(writers_api: httpx.AsyncClient) -> None:
    api = writers_api
    assert (await api.post("/groups", json={"id": "dup"})).status_code == 201
    assert_error(await api.post("/groups", json={"id": "dup", "tools": ["*"]}), 409, "already exists")
    assert (await api.post("/servers", json={"name": "echo", "config": ECHO})).status_code == 201
    assert_error(await api.post("/servers", json={"name": "echo", "config": ECHO}), 409, "'echo' already exists")
    assert (await api.post("/keys", json={"name": "same"})).status_code == 201
    assert_error(await api.post("/keys", json={"name": "same"}), 409, "active key named 'same'")
    # a group deleted and created again is a fresh create, not a conflict
    assert (await api.delete("/groups/dup")).status_code == 204
    assert (await api.post("/groups", json={"id": "dup"})).status_code == 201


async def test_stale_updates_are_409(writers_api: httpx.AsyncClient) -> None:
    api = writers_api
    first = (await api.post("/groups", json={"id": "team-tools", "tools": ["a/b"]})).json()
    stale = {"If-Match": str(first["revision"])}
    second = await api.patch("/groups/team-tools", json={"tools": ["a/c"]}, headers=stale)
    assert second.status_code == 200, second.text
    assert_error(await api.patch("/groups/team-tools", json={"tools": ["a/d"]}, headers=stale), 409, "changed")
    assert_error(await api.put("/groups/team-tools", json={"tools": []}, headers=stale), 409)
    assert_error(await api.delete("/groups/team-tools", headers=stale), 409)
    assert (await api.get("/groups/team-tools")).json()["tools"] == ["a/c"], "the losing writes changed nothing"
    fresh = {"If-Match": f'"{second.json()["revision"]}"'}
    assert (await api.patch("/groups/team-tools", json={"tools": ["a/e"]}, headers=fresh)).status_code == 200

    key = (await api.post("/keys", json={"name": "k"})).json()["key"]
    stale = {"If-Match": str(key["revision"])}
    assert (await api.patch(f"/keys/{key['id']}", json={"grants": ["*"]}, headers=stale)).status_code == 200
    assert_error(await api.patch(f"/keys/{key['id']}", json={"grants": []}, headers=stale), 409)
    assert_error(await api.post(f"/keys/{key['id']}/rotate", headers=stale), 409)

    server = (await api.post("/servers", json={"name": "s", "config": ECHO})).json()
    stale = {"If-Match": str(server["revision"])}
    assert (await api.put("/servers/s", json={"config": ECHO}, headers=stale)).status_code == 200
    assert_error(await api.put("/servers/s", json={"config": ECHO}, headers=stale), 409)


async def test_a_write_racing_a_patch_gets_409_not_a_lost_update(writers_js: Any) -> None:
    """Without If-Match the PATCH still checks the revision it read: a write landing between its read
    and its write makes it fail, and the other write survives."""
    store = AdminStore(writers_js, authorize=False)  # seeds its owner straight into KV
    owner = Principal(name="racer", kind="automation", roles=[RoleBinding(role="owner")])
    await store.access.principals.create(owner.name, owner)
    token, _ = await store.access.issue_token(owner.name, "race", 1, "test")
    app = FastAPI()
    app.include_router(admin_router(store, Authenticator(store)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://admin/admin/v1", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        await client.post("/groups", json={"id": "raced", "tools": ["a/original"]})
        table = store.entities["group"]
        real_get = table.get

        async def get_then_someone_writes(entity_id: str) -> Any:
            found = await real_get(entity_id)
            await table.update(entity_id, found.value.model_copy(update={"tools": ["a/concurrent"]}), found.revision)
            return found

        table.get = get_then_someone_writes  # type: ignore[method-assign]
        assert_error(await client.patch("/groups/raced", json={"tools": ["a/mine"]}), 409, "changed")
        table.get = real_get  # type: ignore[method-assign]
        assert (await client.get("/groups/raced")).json()["tools"] == ["a/concurrent"]


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


async def test_a_password_needs_the_oauth_service_and_says_so(writers_api: httpx.AsyncClient) -> None:
    api = writers_api
    assert (await api.post("/users", json={"id": "pat", "name": "Pat"})).status_code == 201
    answer = await api.put("/users/pat/password", json={"password": "long enough password"})
    assert answer.status_code == 503 and "oauth service is not running" in answer.json()["message"]
    short = await api.put("/users/pat/password", json={"password": "Zq9!xw"})
    assert short.status_code == 422 and "Zq9!xw" not in short.text, "a password is never echoed"
