"""Virtual keys through the admin REST API against a real NATS, with the admin service (and an ingress
replica, where a change must arrive) started once for the module: credentials checked before
anything is read, secrets shown once and stored never, rotate/revoke as every replica sees them, and
conflicting writes answered 409. What it refuses without writing is in test_admin_api_refusals.py,
the other objects' round trips in test_admin_api_entities.py, schema-driven requests in
test_admin_api_schema.py."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from nats.js.errors import KeyNotFoundError

from libs.common.bus.nats import kv_bucket
from libs.common.contracts import subjects
from libs.common.contracts.admin_principals import Principal, RoleBinding
from libs.common.contracts.messages import Caller, KeyRecord
from libs.common.settings import IngressSettings
from services.admin.api import AdminStore, Authenticator, admin_router
from services.ingress.service import IngressService
from tests.support.admin_api import ECHO, base_url
from tests.support.admin_api_checks import admin_bus, assert_error, js
from tests.support.adminapi_stack import ModuleAdmin, module_admin_fixture
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

__all__ = ["js"]  # a fixture, shared

# One admin service for the module, started once (per-test ones made most of this file's cost), for
# tests that each write objects under names no other test uses, and assert on those only. A test that
# needs an empty store or lists everything keeps its own `admin`/`api`.


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
    async with admin_bus(writers.nats_url) as bus:
        yield bus


def authenticates(service: IngressService, secret: str) -> bool:
    return isinstance(service.keys.authenticate(f"Bearer {secret}"), Caller)


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


# ---------------------------------------------------------------- 422 and 409 of writes


async def test_malformed_json_and_if_match(writers_api: httpx.AsyncClient) -> None:
    api = writers_api
    response = await api.post("/groups", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(response, 422, "body")
    await api.post("/groups", json={"id": "g"})
    assert_error(await api.patch("/groups/g", json={}, headers={"If-Match": "yesterday"}), 422, "If-Match")


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


async def test_a_password_needs_the_oauth_service_and_says_so(writers_api: httpx.AsyncClient) -> None:
    api = writers_api
    assert (await api.post("/users", json={"id": "pat", "name": "Pat"})).status_code == 201
    answer = await api.put("/users/pat/password", json={"password": "long enough password"})
    assert answer.status_code == 503 and "oauth service is not running" in answer.json()["message"]
    short = await api.put("/users/pat/password", json={"password": "Zq9!xw"})
    assert short.status_code == 422 and "Zq9!xw" not in short.text, "a password is never echoed"
