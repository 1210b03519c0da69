"""Token exchange (RFC 8693) end to end: a user who authorized one upstream is not asked to log in
again for another resource of the same authorization server.

A real OAuth-protected upstream (authlib authorization server, official SDK resources) serves two
resources, `/mcp` (streamable HTTP) and `/sse` (HTTP+SSE), each accepting only tokens bound to it
(RFC 8707). Both are configured `per_user: true`. Alice authorizes the first through her own link;
her first call to the second then goes through with a token the oauth service obtained by exchanging
her first token at the authorization server, bound to the second resource, carrying her upstream
identity, even though the oauth service restarted in between (which servers share an authorization
server is persisted). Bob, who authorized nothing, has nothing to exchange and gets his own link.
"""

from __future__ import annotations

import re

import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from services.oauth.service import OAuthService
from tests.support.gateway import Gateway, default_config
from tests.support.polling import poll_until
from tests.support.upstream_login import follow_authorization_link, gateway_for_oauth_upstreams, running_oauth_upstream

pytestmark = pytest.mark.integration

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ALICE_KEY = "bk_test_alice_exchange_key_00000"
BOB_KEY = "bk_test_bob_exchange_key_0000000"
FIRST, SECOND = "down-tracker", "down-tracker-sse"  # "down*": running_gateway does not wait for them
LINK = re.compile(r"http://\S+/oauth/upstream/authorize\?ticket=[\w.=-]+")


def config(base: str) -> dict:
    raw = default_config(
        {
            FIRST: {"url": f"{base}/mcp", "per_user": True},
            SECOND: {"url": f"{base}/sse", "type": "sse", "per_user": True},
        }
    )
    raw["users"] = [{"id": "alice", "name": "Alice"}, {"id": "bob", "name": "Bob"}]
    grants = [f"{FIRST}/*", f"{SECOND}/*"]
    raw["keys"] += [
        {"name": "alice-key", "key": ALICE_KEY, "user": "alice", "tools": grants},
        {"name": "bob-key", "key": BOB_KEY, "user": "bob", "tools": grants},
    ]
    return raw


def _ready(gateway: Gateway, server: str) -> bool:
    status = gateway.ingress.catalog.server_status(server)
    return status is not None and status.status == "ready"


def _needs_auth(gateway: Gateway, server: str) -> bool:
    status = gateway.ingress.catalog.server_status(server)
    return status is not None and status.health == "needs_auth"


async def _call(gateway: Gateway, key: str, server: str) -> str:
    """`whoami` on `server` as `key`: the upstream account the call's token belongs to, or the refusal."""
    async with gateway.client(key) as client:
        try:
            result = await client.call_tool(f"{server}__whoami", {})
        except MCPError as refused:
            return f"refused: {refused.error.message}"
    assert not result.is_error, result
    return result.content[0].text  # type: ignore[union-attr]


async def _restart_oauth_service(gateway: Gateway) -> None:
    """Stop the oauth service and start a new one with the same settings (what a restart keeps: KV)."""
    index, old = next((i, s) for i, s in enumerate(gateway.services) if isinstance(s, OAuthService))
    await old.stop()
    fresh = OAuthService(old.settings)
    await fresh.start()
    gateway.services[index] = fresh


async def _exchanges(base: str) -> int:
    async with httpx2.AsyncClient(timeout=10) as http:
        return int((await http.get(f"{base}/test/stats")).json()["grants"].get(TOKEN_EXCHANGE, 0))


async def test_a_second_resource_of_the_same_authorization_server_needs_no_second_login(
    nats_url, redis_url, tmp_path
) -> None:
    with running_oauth_upstream() as base:
        async with gateway_for_oauth_upstreams(nats_url, redis_url, tmp_path, config(base)) as (
            gateway,
            public,
        ):
            # an admin authorizes each server once, so Bastion can list their tools
            for server in (FIRST, SECOND):
                await poll_until(lambda server=server: _needs_auth(gateway, server), f"{server} needs_auth", 30)
                async with httpx2.AsyncClient(headers=gateway.admin_headers, timeout=20) as admin:
                    link = (await admin.get(f"{gateway.admin_api}/servers/{server}")).json()["authorize_url"]
                await follow_authorization_link(link, public, "admin-ann")
                await poll_until(lambda server=server: _ready(gateway, server), f"{server} listed", 30)

            # alice authorizes the first resource through her own link
            refused = await _call(gateway, ALICE_KEY, FIRST)
            link = LINK.search(refused)
            assert link is not None, refused
            await follow_authorization_link(link.group(0), public, "alice-upstream")
            # which servers share an authorization server is kept in the store, not only in memory
            await _restart_oauth_service(gateway)
            before = await _exchanges(base)
            # her list (the client lists before it calls) shows what her own token unlocks on each server:
            # the second resource's session gets a token exchanged from hers, bound to /sse
            assert await _call(gateway, ALICE_KEY, FIRST) == "alice-upstream"

            # the second resource: no link, no login, one exchange whether her list or her call asked first
            assert await _call(gateway, ALICE_KEY, SECOND) == "alice-upstream"
            assert await _exchanges(base) == before + 1
            assert await _call(gateway, ALICE_KEY, SECOND) == "alice-upstream"  # kept, not exchanged again
            assert await _exchanges(base) == before + 1

            # bob has no token of his own anywhere: nothing to exchange, never alice's or the admin's
            refused = await _call(gateway, BOB_KEY, SECOND)
            assert refused.startswith("refused:") and "authorize this server for your user first" in refused
            assert "alice" not in refused and "admin-ann" not in refused
            assert await _exchanges(base) == before + 1
