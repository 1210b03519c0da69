"""The gateway as an MCP Registry: `GET /v0.1/servers` and its read routes answer each key with exactly
the servers it may use, in the shape the registry's published OpenAPI (tests/data/mcp_registry) gives,
and an entry's remote, used as a registry client uses it, reaches that server and no other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema
import pytest
import yaml

from tests.support.gateway import ADMIN_KEY, NOTHING_KEY, Gateway, default_config, gateway_on_own_servers

pytestmark = pytest.mark.integration

OPENAPI = Path(__file__).resolve().parents[1] / "data" / "mcp_registry" / "openapi.yaml"
ECHO_ONLY_KEY = "bk_test_registry_echo_only_00000"


def validator(component: str) -> jsonschema.Draft202012Validator:
    components = yaml.safe_load(OPENAPI.read_text())["components"]
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{component}", "components": components})


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    config = default_config()
    config["keys"].append({"name": "echo-only", "key": ECHO_ONLY_KEY, "tools": ["echo/*"]})
    async with gateway_on_own_servers(tmp_path_factory.mktemp("regout"), config) as gw:
        await gw.wait_for_servers("echo", "notes")
        yield gw


def base(gateway: Gateway) -> str:
    return gateway.url.removesuffix("/mcp")


async def get(gateway: Gateway, path: str, key: str | None, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.get(base(gateway) + path, headers=headers, params=params)


async def test_each_key_lists_exactly_the_servers_it_may_use_in_the_published_shape(gateway: Gateway) -> None:
    namespace = "127.0.0.1"
    everything = (await get(gateway, "/v0.1/servers", ADMIN_KEY)).json()
    validator("ServerList").validate(everything)
    unnamespaced = {"servers": [{"server": {**everything["servers"][0]["server"], "name": "echo"}}]}
    assert not validator("ServerList").is_valid(unnamespaced)  # the check is the published schema's, not lenient
    assert [s["server"]["name"] for s in everything["servers"]] == [f"{namespace}/echo", f"{namespace}/notes"]
    narrow = (await get(gateway, "/v0.1/servers", ECHO_ONLY_KEY)).json()
    validator("ServerList").validate(narrow)
    assert [s["server"]["name"] for s in narrow["servers"]] == [f"{namespace}/echo"]
    assert (await get(gateway, "/v0.1/servers", NOTHING_KEY)).json() == {"servers": [], "metadata": {"count": 0}}
    searched = (await get(gateway, "/v0.1/servers", ADMIN_KEY, search="note")).json()
    assert [s["server"]["name"] for s in searched["servers"]] == [f"{namespace}/notes"]
    paged = (await get(gateway, "/v0.1/servers", ADMIN_KEY, limit=1)).json()
    assert paged["metadata"] == {"count": 1, "nextCursor": "1"}
    rest = (await get(gateway, "/v0.1/servers", ADMIN_KEY, limit=1, cursor="1")).json()
    assert [s["server"]["name"] for s in rest["servers"]] == [f"{namespace}/notes"]


async def test_a_server_the_key_may_not_use_is_not_found_as_one_that_does_not_exist(gateway: Gateway) -> None:
    notes = quote("127.0.0.1/notes", safe="")
    hidden = await get(gateway, f"/v0.1/servers/{notes}/versions/latest", ECHO_ONLY_KEY)
    absent = await get(gateway, f"/v0.1/servers/{quote('127.0.0.1/nothing', safe='')}/versions/latest", ADMIN_KEY)
    assert (
        (hidden.status_code, hidden.json())
        == (absent.status_code, absent.json())
        == (404, {"error": "Server not found"})
    )
    assert (await get(gateway, f"/v0.1/servers/{notes}/versions", ECHO_ONLY_KEY)).status_code == 404
    refused = await get(gateway, "/v0.1/servers", "bk_not_a_key_of_this_gateway_000")
    assert refused.status_code == 401 and "servers" not in refused.json()
    assert (await get(gateway, "/v0.1/servers", None)).status_code == 401


async def test_versions_and_latest_answer_the_same_entry(gateway: Gateway) -> None:
    echo = quote("127.0.0.1/echo", safe="")
    latest = (await get(gateway, f"/v0.1/servers/{echo}/versions/latest", ECHO_ONLY_KEY)).json()
    validator("ServerResponse").validate(latest)
    version = latest["server"]["version"]
    assert version.startswith("1.0.0+")
    pinned = await get(gateway, f"/v0.1/servers/{echo}/versions/{quote(version, safe='')}", ECHO_ONLY_KEY)
    assert pinned.json() == latest
    listed = (await get(gateway, f"/v0.1/servers/{echo}/versions", ECHO_ONLY_KEY)).json()
    validator("ServerList").validate(listed)
    assert listed["servers"] == [latest]
    assert (await get(gateway, f"/v0.1/servers/{echo}/versions/0.9.0", ECHO_ONLY_KEY)).status_code == 404


def headers_of(remote: dict[str, Any], key: str) -> dict[str, str]:
    """The remote's headers as a registry client fills them: `{api_key}` from its user, fixed values as written."""
    return {h["name"]: h["value"].replace("{api_key}", key) for h in remote["headers"]}


async def test_an_entrys_remote_reaches_its_server_and_no_other(gateway: Gateway) -> None:
    entry = (await get(gateway, f"/v0.1/servers/{quote('127.0.0.1/echo', safe='')}/versions/latest", ADMIN_KEY)).json()
    remote = entry["server"]["remotes"][0]
    assert remote["url"] == gateway.url and remote["type"] == "streamable-http"
    async with gateway.client(key=None, headers=headers_of(remote, ADMIN_KEY)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    assert names and all(name.startswith("echo__") for name in names)  # the admin key's notes tools are not there
