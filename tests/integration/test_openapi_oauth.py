"""A REST API behind OAuth, imported from its OpenAPI document, end to end: the
OAuth-protected test upstream's `/api` (its own authorization server, RFC 9728 challenge, tokens bound
to the resource) through the whole gateway.

Shared: an admin authorizes once and every key's call carries that token. Per user (`per_user: true`):
each user's call carries their own token, a user who has not authorized gets their own link, and a key
bound to no user is refused. Calls are audited like any tool's, and no token reaches a row.
"""

from __future__ import annotations

import re
from typing import Any

import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from tests.support.audit_rows import audit_rows
from tests.support.gateway import ADMIN_KEY, Gateway
from tests.support.polling import poll_until
from tests.support.upstream_login import follow_authorization_link, gateway_for_oauth_upstreams, running_oauth_upstream

pytestmark = pytest.mark.integration

ALICE_KEY = "bk_test_openapi_alice_key_00000"
BOB_KEY = "bk_test_openapi_bob_key_0000000"
SERVER = "down-rest"  # "down*": running_gateway does not wait for it to be ready (it needs authorizing)
TOOL = f"{SERVER}__whoami"
LINK = re.compile(r"http://\S+/oauth/upstream/authorize\?ticket=[\w.=-]+")


def config(base: str, *, per_user: bool) -> dict[str, Any]:
    openapi = {"document": f"{base}/api/openapi.json", "base_url": f"{base}/api", "auth": {"type": "oauth"}}
    server: dict[str, Any] = {"openapi": openapi}
    if per_user:
        server["per_user"] = True
    return {
        "mcpServers": {SERVER: server},
        "users": [{"id": "alice", "name": "Alice"}, {"id": "bob", "name": "Bob"}],
        "keys": [
            {"name": "admin", "key": ADMIN_KEY, "tools": ["*"]},
            {"name": "alice-key", "key": ALICE_KEY, "user": "alice", "tools": [f"{SERVER}/*"]},
            {"name": "bob-key", "key": BOB_KEY, "user": "bob", "tools": [f"{SERVER}/*"]},
        ],
    }


def _state(gateway: Gateway) -> tuple[str, str] | None:
    status = gateway.ingress.catalog.server_status(SERVER)
    return (status.status, status.health or "") if status is not None else None


async def _admin_authorizes(gateway: Gateway, public: str, account: str) -> None:
    """The server waits for authorization; an admin follows the link the admin API shows."""
    await poll_until(lambda: _state(gateway) == ("unavailable", "needs_auth"), "needs_auth", 30)
    async with httpx2.AsyncClient(headers=gateway.admin_headers, timeout=20) as admin:
        shown = (await admin.get(f"{gateway.admin_api}/servers/{SERVER}")).json()
    assert SERVER in await follow_authorization_link(shown["authorize_url"], public, account)
    await poll_until(lambda: (_state(gateway) or ("",))[0] == "ready", "the API's tools listed", 30)


async def _whoami(gateway: Gateway, key: str) -> str:
    async with gateway.client(key) as client:
        result = await client.call_tool(TOOL, {})
    assert not result.is_error, result
    return str(result.structured_content or result.content)


async def _refusal(gateway: Gateway, key: str) -> str:
    async with gateway.client(key) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool(TOOL, {})
    return refused.value.error.message


async def test_a_shared_authorization_serves_every_key_and_no_token_is_audited(nats_url, redis_url, tmp_path) -> None:
    with running_oauth_upstream() as base:
        async with gateway_for_oauth_upstreams(nats_url, redis_url, tmp_path, config(base, per_user=False)) as (
            gateway,
            public,
        ):
            await _admin_authorizes(gateway, public, "ops-ann")
            assert "ops-ann" in await _whoami(gateway, ADMIN_KEY)
            assert "ops-ann" in await _whoami(gateway, ALICE_KEY)  # one token for the server, whoever calls
            rows = [*await audit_rows(nats_url, "admin", 1), *await audit_rows(nats_url, "alice-key", 1)]
            calls = [r for r in rows if r.kind == "tool_call"]
            assert {(r.server, r.tool, r.status) for r in calls} == {(SERVER, "whoami", "ok")}
            assert not any("Bearer" in r.model_dump_json() for r in rows)


async def test_each_user_calls_the_api_with_their_own_token(nats_url, redis_url, tmp_path) -> None:
    with running_oauth_upstream() as base:
        async with gateway_for_oauth_upstreams(nats_url, redis_url, tmp_path, config(base, per_user=True)) as (
            gateway,
            public,
        ):
            await _admin_authorizes(gateway, public, "ops-ann")  # so Bastion can list the API's tools

            refused = await _refusal(gateway, ALICE_KEY)  # not on the admin's token
            assert "authorize this server for your user first" in refused and "ops-ann" not in refused
            alice_link = LINK.search(refused)
            assert alice_link is not None, refused
            assert SERVER in await follow_authorization_link(alice_link.group(0), public, "alice-upstream")
            assert "alice-upstream" in await _whoami(gateway, ALICE_KEY)

            bob_link = LINK.search(await _refusal(gateway, BOB_KEY))
            assert bob_link is not None and bob_link.group(0) != alice_link.group(0)
            assert SERVER in await follow_authorization_link(bob_link.group(0), public, "bob-upstream")
            assert "bob-upstream" in await _whoami(gateway, BOB_KEY)
            assert "alice-upstream" in await _whoami(gateway, ALICE_KEY)

            assert "call it as a user" in await _refusal(gateway, ADMIN_KEY)  # a key bound to no user
