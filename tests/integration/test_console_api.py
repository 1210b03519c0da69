"""The console's own API routes on a real admin service: the connectivity test uses a stored
server's secrets for the `***` it is sent back (and nobody else's), refuses what it must not run,
and never echoes a credential; the playground is off, saying why, without the gateway's address."""

from __future__ import annotations

import httpx
import pytest

from tests.support.gateway import example_server_over_http

pytestmark = pytest.mark.integration

BEARER = "upstream-bearer-for-the-probe-test"


async def test_a_stored_servers_masked_secret_is_used_for_its_test_and_never_shown(api: httpx.AsyncClient) -> None:
    async with example_server_over_http("--http", "--bearer", BEARER) as url:
        guarded = {"url": url, "headers": {"Authorization": f"Bearer {BEARER}"}}
        assert (await api.post("/servers", json={"name": "guarded", "config": guarded})).status_code == 201
        shown = (await api.get("/servers/guarded")).json()["config"]
        assert shown["headers"] == {"Authorization": "***"}

        again = await api.post("/console/servers/test", json={"name": "guarded", "config": shown})  # as read
        assert again.status_code == 200 and again.json()["ok"], again.text
        assert "echo" in again.json()["tools"]

        # another name gets no stored secret: the upstream refuses the literal mask
        other = await api.post("/console/servers/test", json={"name": "other", "config": shown})
        assert other.status_code == 200 and not other.json()["ok"]
        wrong = await api.post(
            "/console/servers/test",
            json={"name": "guarded2", "config": {"url": url, "headers": {"Authorization": "Bearer not-it"}}},
        )
        assert not wrong.json()["ok"] and "not-it" not in wrong.text and BEARER not in wrong.text + other.text


async def test_a_command_is_never_run_by_the_admin_service(api: httpx.AsyncClient) -> None:
    refused = await api.post(
        "/console/servers/test", json={"name": "local", "config": {"command": "touch", "args": ["/tmp/console-ran"]}}
    )
    assert refused.status_code == 422 and refused.json()["error"] == "not_testable"
    assert "executors" in refused.json()["message"]


async def test_the_playground_says_it_is_off_without_the_gateway_address(api: httpx.AsyncClient) -> None:
    answer = await api.post("/console/playground/call", json={"secret": "bk_anything", "tool": "echo__echo"})
    assert answer.status_code == 503 and "BASTION_PUBLIC_URL" in answer.json()["message"]
    assert "bk_anything" not in answer.text
