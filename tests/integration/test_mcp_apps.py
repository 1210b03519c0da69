"""MCP Apps (`io.modelcontextprotocol/ui`) through the gateway, official SDK on both sides: an
upstream's `ui://` app is listed and read as `ui://<server>/...`, with every place naming it
renamed and its CSP and permissions as the upstream sent them; a tool only the app may call is
kept from an agent's `tools/list` and refused to it, yet listed to and callable by a host that
declared the extension, its audit row saying the app made the call; grants hold for app resources
as for tools, and a URI that names another place is refused."""

from __future__ import annotations

from typing import Any

import pytest
from mcp.client.extension import advertise
from mcp.shared.exceptions import MCPError

from libs.common.contracts.ui_apps import APP_MIME_TYPE, EXTENSION
from tests.support.apps_gateway import apps_gateway, gateway
from tests.support.gateway import ADMIN_KEY
from tests.support.ingress_trail import settled_trail
from tests.support.ts_sdk import run_ts_apps_host

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")]
__all__ = ["apps_gateway", "gateway"]  # the fixtures, used by name

APP = "ui://apps/board/view.html"
VIEWER_KEY = "bk_test_app_viewer_key_000000"
"""May call the board's tools and read its app, but not the app-only refresh."""
BLIND_KEY = "bk_test_app_blind_key_0000000"
"""May call `show_board` only: the app itself is not granted."""
HOST = [advertise(EXTENSION, {"mimeTypes": [APP_MIME_TYPE]})]


@pytest.fixture(scope="module")
def apps_keys() -> list[dict[str, Any]]:
    return [
        {"name": "viewer", "key": VIEWER_KEY, "tools": ["apps/show_board", "apps/resource:ui://board/*"]},
        {"name": "blind", "key": BLIND_KEY, "tools": ["apps/show_board"]},
    ]


async def test_an_app_is_listed_and_read_under_its_server_with_its_csp(gateway):
    async with gateway.client() as agent:
        listed = {str(r.uri): r for r in (await agent.list_resources()).resources}
        assert APP in listed and "ui://board/view.html" not in listed
        assert listed[APP].mime_type == APP_MIME_TYPE
        read = await agent.read_resource(APP)
        content = read.contents[0]
        assert str(content.uri) == APP and content.mime_type == APP_MIME_TYPE
        assert "Board v1" in content.text
        ui = content.meta["ui"]
        assert ui["csp"] == {
            "connectDomains": ["https://api.example.com"],
            "resourceDomains": ["https://cdn.example.com"],
        }
        assert ui["permissions"] == {"clipboardWrite": {}} and ui["prefersBorder"] is True

        tools = {tool.name: tool for tool in (await agent.list_tools()).tools}
        assert tools["apps__show_board"].meta["ui"]["resourceUri"] == APP
        linked = await agent.call_tool("apps__board_link", {})
        assert linked.meta["ui"]["resourceUri"] == APP


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_an_app_only_tool_is_kept_from_agents_and_refused_to_them(gateway, mode):
    async with gateway.client(mode=mode) as agent:
        assert "apps__refresh_board" not in {tool.name for tool in (await agent.list_tools()).tools}
        with pytest.raises(MCPError) as refused:
            await agent.call_tool("apps__refresh_board", {})
        assert EXTENSION in refused.value.error.message


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_host_lists_and_calls_the_app_only_tool_and_audit_says_the_app_called(gateway, mode):
    async with gateway.client(mode=mode, extensions=HOST) as host:
        tools = {tool.name: tool for tool in (await host.list_tools()).tools}
        assert tools["apps__refresh_board"].meta["ui"] == {"resourceUri": APP, "visibility": ["app"]}
        answer = await host.call_tool("apps__refresh_board", {})
        assert not answer.is_error and answer.content[0].text.startswith("refreshed")
        await host.call_tool("apps__show_board", {})
    rows = await settled_trail(gateway)
    assert {row.initiator for row in rows if row.name == "apps__refresh_board" and row.status == "ok"} == {"app"}
    assert {row.initiator for row in rows if row.name == "apps__show_board"} == {None}


async def test_grants_hold_for_app_resources_and_app_only_tools(gateway):
    async with gateway.client(VIEWER_KEY, extensions=HOST) as viewer:
        assert [str(r.uri) for r in (await viewer.list_resources()).resources] == [APP]
        assert "Board v1" in (await viewer.read_resource(APP)).contents[0].text
        names = {tool.name for tool in (await viewer.list_tools()).tools}
        assert names == {"apps__show_board"}  # a host, but the app-only tool is not granted
        with pytest.raises(MCPError):
            await viewer.call_tool("apps__refresh_board", {})
    async with gateway.client(BLIND_KEY) as blind:
        assert (await blind.list_resources()).resources == []
        with pytest.raises(MCPError):
            await blind.read_resource(APP)


@pytest.mark.parametrize(
    "uri",
    [
        "ui://apps/../echo/board/view.html",
        "ui://apps/board/%2e%2e/view.html",
        "ui://apps/board/./view.html",
        "ui://apps\\board/view.html",
        "ui://apps",
        "ui:///board/view.html",
        "ui://nosuch/board/view.html",
    ],
)
async def test_a_ui_uri_that_names_another_place_is_refused(gateway, uri):
    async with gateway.client() as agent:
        with pytest.raises(MCPError) as refused:
            await agent.read_resource(uri)
        assert "Board" not in str(refused.value)


async def test_the_typescript_sdk_as_a_host_reads_the_app_and_calls_its_app_only_tool(gateway):
    host = await run_ts_apps_host(gateway.url, ADMIN_KEY, "apps__show_board", "apps__refresh_board")
    assert host["tools"]["apps__refresh_board"] == {"resourceUri": APP, "visibility": ["app"]}
    assert "apps__refresh_board" not in host["modelTools"] and "apps__show_board" in host["modelTools"]
    app = host["app"]
    assert app["uri"] == APP and app["mimeType"] == APP_MIME_TYPE and "Board v1" in app["text"]
    assert app["_meta"]["ui"]["csp"]["connectDomains"] == ["https://api.example.com"]
    assert host["call"]["content"][0]["text"].startswith("refreshed") and not host["call"].get("isError")
