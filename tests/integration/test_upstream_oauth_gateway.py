"""The whole gateway in front of a real OAuth-protected upstream (authlib authorization server, SDK
resources over streamable HTTP and SSE): the server shows `needs_auth` with a Bastion link in the
admin API, an admin completes the authorization step through Bastion's own URLs, calls then carry
the upstream token, a refused token is refreshed on the 401, and when refresh fails the server is
`needs_auth` again with the link."""

from __future__ import annotations

import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from services.executor.service import ExecutorService
from tests.support.admin_api import servers_list
from tests.support.gateway import ADMIN_KEY, Gateway, default_config
from tests.support.polling import poll_until
from tests.support.upstream_login import gateway_for_oauth_upstreams, log_in, running_oauth_upstream

pytestmark = pytest.mark.integration


def _health(gateway: Gateway, server: str) -> str | None:
    status = gateway.ingress.catalog.server_status(server)
    return status.health if status is not None else None


def _lean_sent(gateway: Gateway, server: str) -> int:
    """Requests the executor sent `server` the lean way (one POST on `http1.HttpPool`, `lean.HttpLink`) so far."""
    executor = next(s for s in gateway.services if isinstance(s, ExecutorService))
    link = executor.upstreams[server].session.lean_link
    assert link is not None and link.usable, "an OAuth upstream keeps the lean send"
    return link.sent


def _ready(gateway: Gateway, server: str) -> bool:
    status = gateway.ingress.catalog.server_status(server)
    return status is not None and status.status == "ready"


async def _authorize_as_admin(gateway: Gateway, public: str, base: str, server: str, username: str) -> None:
    async with httpx2.AsyncClient(headers=gateway.admin_headers, timeout=20) as admin:
        shown = (await admin.get(f"{gateway.admin_api}/servers/{server}")).json()
    assert shown["health"] == "needs_auth", shown
    assert "HTTP 401" in shown["error"]  # the reason names the authorization step once the oauth service answered
    link = shown["authorize_url"]
    assert link and link.startswith(f"{public}/oauth/upstream/authorize?ticket=")
    listed = await servers_list(gateway.admin_api, gateway.admin_token)  # the CLI prints a link of its own
    assert f"authorize {server}: {public}/oauth/upstream/authorize?ticket=" in listed, listed
    async with httpx2.AsyncClient(timeout=20) as browser:
        started = await browser.get(link)
        assert started.status_code == 302, started.text
        upstream_login = started.headers["location"]
        assert upstream_login.startswith(f"{base}/authorize?")
        back = await log_in(browser, upstream_login, username)
        assert back.startswith(f"{public}/oauth/upstream/callback?")
        done = await browser.get(back)
        assert done.status_code == 200 and server in done.text, done.text


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_admin_authorizes_through_bastion_then_calls_refresh_and_fall_back_to_needs_auth(
    nats_url: str, redis_url: str, tmp_path, transport: str
) -> None:
    with running_oauth_upstream() as base:
        server = "down-oauth"  # "down*": running_gateway does not wait for it to be ready
        entry = {"url": f"{base}/mcp"} if transport == "http" else {"url": f"{base}/sse", "type": "sse"}
        config = {**default_config(), "mcpServers": {server: entry}}  # the example servers would only cost start-up
        async with gateway_for_oauth_upstreams(nats_url, redis_url, tmp_path, config) as (gateway, public):
            await poll_until(lambda: _health(gateway, server) == "needs_auth", "needs_auth", 30)
            await _authorize_as_admin(gateway, public, base, server, "admin-ann")
            await poll_until(lambda: _ready(gateway, server), "ready after authorization", 30)

            async with gateway.client(ADMIN_KEY) as client:
                lean_before = _lean_sent(gateway, server) if transport == "http" else 0
                result = await client.call_tool(f"{server}__whoami", {})
                assert result.content[0].text == "admin-ann"  # type: ignore[union-attr]
                if transport == "http":  # sent the lean way, with the upstream's token on the POST
                    assert _lean_sent(gateway, server) == lean_before + 1

                # the upstream stops accepting the token: the executor refreshes it on the 401
                async with httpx2.AsyncClient() as http:
                    await http.post(f"{base}/test/expire-access")
                result = await client.call_tool(f"{server}__echo", {"text": "still in"})
                assert result.content[0].text == "still in"  # type: ignore[union-attr]
                if transport == "http":  # the lean POST got the 401; the SDK's auth flow refreshed and resent
                    assert _lean_sent(gateway, server) == lean_before + 2
                    result = await client.call_tool(f"{server}__echo", {"text": "lean again"})
                    assert result.content[0].text == "lean again"  # type: ignore[union-attr]
                    assert _lean_sent(gateway, server) == lean_before + 3  # the renewed token goes lean
                async with httpx2.AsyncClient() as http:
                    grants = (await http.get(f"{base}/test/stats")).json()["grants"]
                assert grants.get("refresh_token", 0) >= 1

                # refresh fails too: needs_auth again, with a link for the admin
                async with httpx2.AsyncClient() as http:
                    await http.post(f"{base}/test/expire-refresh")
                with pytest.raises(MCPError):
                    await client.call_tool(f"{server}__echo", {"text": "locked out"})
                await poll_until(lambda: _health(gateway, server) == "needs_auth", "needs_auth again", 30)
                listed = (await client.list_tools()).tools
                assert not any(t.name.startswith(f"{server}__") for t in listed), "unusable tools are not offered"
            async with httpx2.AsyncClient(headers=gateway.admin_headers, timeout=20) as admin:
                shown = (await admin.get(f"{gateway.admin_api}/servers/{server}")).json()
            assert shown["authorize_url"], shown
