"""What the admin REST API refuses before writing anything, against a real NATS with the admin service
started once for the module: 401 without a credential (and with no bootstrap token, for everyone),
422 naming the field, 404 for unknown ids and routes, 405, and the OpenAPI schema that promises them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from libs.common.settings import AdminSettings
from services.admin.service import AdminService
from tests.support.admin_api import base_url
from tests.support.admin_api_checks import assert_error
from tests.support.adminapi_stack import ModuleAdmin, module_admin_fixture

pytestmark = pytest.mark.integration

# The module's admin service, started once: its tests write nothing, so its key list stays empty (the
# 422 tests check that). A test that needs other settings starts its own.


readers = module_admin_fixture("readers")


@pytest.fixture
async def readers_api(readers: ModuleAdmin) -> AsyncIterator[httpx.AsyncClient]:
    async with readers.client() as client:
        yield client


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
