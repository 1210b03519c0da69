"""Servers imported from an MCP Registry: a local registry (tests/support/mcp_registry.py) serves the
published API over real `server.json` documents (tests/data/mcp_registry) and one whose remote is a real
echo server; a gateway with the admin service imports from it (admin API and CLI), calls what it
imported, keeps the pinned version until a person approves the registry's newer one, and refuses a
package (a command) to anyone but the owner."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from libs.common.bus.nats import connect
from libs.common.contracts import subjects
from libs.common.runtime.sealing import new_key
from tests.support.admin_api import principal_token
from tests.support.gateway import ADMIN_KEY, Gateway, example_server_over_http, gateway_on_own_servers
from tests.support.mcp_registry import LIVE, PUBLISHED, live_document, publish
from tests.support.polling import poll_until
from tests.support.processes import serving_process

pytestmark = pytest.mark.integration

UPSTREAM_SECRET = "Bearer upstream-registry-secret-7731"
HINTED = PUBLISHED.parent / "bastion" / "value-hints.json"
CONFIG = {"mcpServers": {}, "keys": [{"name": "admin", "key": ADMIN_KEY, "tools": ["*"]}]}


@pytest.fixture(scope="module")
def registry_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("registry")
    for file in sorted(PUBLISHED.glob("*.json")):
        shutil.copy(file, folder / file.name)
    return folder


@pytest.fixture(scope="module")
def registry_url(registry_folder: Path) -> Iterator[str]:
    argv = [sys.executable, "-m", "tests.support.mcp_registry", str(registry_folder)]
    with serving_process(argv, "the local MCP registry") as url:
        yield url


@pytest.fixture(scope="module")
async def echo_url() -> AsyncIterator[str]:
    async with example_server_over_http("--http") as url:
        yield url


@pytest.fixture(scope="module")
async def gateway(
    tmp_path_factory: pytest.TempPathFactory, registry_url: str, registry_folder: Path, echo_url: str
) -> AsyncIterator[Gateway]:
    publish(registry_folder, live_document(echo_url, "2.1.0"), "live-2.1.0.json")
    options = {"registries": {"local": registry_url, "private": "http://reg-user:reg-pass-4411@127.0.0.1:9"}}
    async with gateway_on_own_servers(
        tmp_path_factory.mktemp("regimport"),
        CONFIG,
        admin=True,
        secrets_key=new_key(),
        admin_options=options,
    ) as gw:
        yield gw


@pytest.fixture
async def owner(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.admin_api, headers=gateway.admin_headers, timeout=30) as http:
        yield http


async def test_search_lists_the_published_servers_at_their_latest_versions(owner: httpx.AsyncClient) -> None:
    assert (await owner.get("/registries")).json()["local"].startswith("http://127.0.0.1:")
    found = (await owner.get("/registries/local/servers", params={"search": "weather"})).json()
    names = {(s["server"]["name"], s["server"]["version"]) for s in found["servers"]}
    assert names == {
        ("io.github.user/local-weather", "1.0.0"),
        ("io.github.user/remote-weather", "2.1.0"),
        ("io.github.example/weather-mcp", "0.5.0"),
    }
    entry = (await owner.get("/registries/local/entry", params={"server": "io.github.example/database-manager"})).json()
    assert entry["choices"] == ["package:0"]
    missing = await owner.get("/registries/local/entry", params={"server": "io.github.user/nothing-here"})
    assert missing.status_code == 404 and "io.github.user/nothing-here" in missing.json()["message"]
    unknown = await owner.get("/registries/elsewhere/servers")
    assert unknown.status_code == 404 and "configured: local, private" in unknown.json()["message"]


async def test_an_imported_remote_is_called_its_header_asked_for_and_sealed(
    gateway: Gateway, owner: httpx.AsyncClient
) -> None:
    asked = await owner.post("/servers/import", json={"registry": "local", "server": LIVE, "name": "regecho"})
    assert asked.status_code == 422 and "give a value for: Authorization (secret)" in asked.json()["message"]
    body = {"registry": "local", "server": LIVE, "name": "regecho", "values": {"Authorization": UPSTREAM_SECRET}}
    made = await owner.post("/servers/import", json=body)
    assert made.status_code == 201, made.text
    config = made.json()["config"]
    assert config["registry"] == {
        "registry": "local", "server": LIVE, "version": "2.1.0", "choice": "remote:0", "inputs": {}
    }  # fmt: skip
    assert config["type"] == "http" and config["url"].startswith("http://127.0.0.1:")
    assert UPSTREAM_SECRET not in made.text  # answered masked
    await gateway.wait_for_servers("regecho")
    async with gateway.client() as client:
        result = await client.call_tool("regecho__echo", {"text": "from the registry"})
    assert "from the registry" in str(result.content)
    nc = await connect(gateway.nats_url, "test-read-servers")
    try:
        raw = (await (await nc.jetstream().key_value(subjects.KV_SERVERS)).get("regecho")).value or b""
    finally:
        await nc.close()
    assert UPSTREAM_SECRET.encode() not in raw  # sealed at rest, like every server secret


async def test_a_newer_version_waits_for_approval_and_moves_with_its_secret_kept(
    gateway: Gateway, owner: httpx.AsyncClient, registry_folder: Path, echo_url: str
) -> None:
    body = {"registry": "local", "server": LIVE, "name": "pinned", "values": {"Authorization": UPSTREAM_SECRET}}
    assert (await owner.post("/servers/import", json=body)).status_code == 201
    assert [u for u in (await owner.get("/registries/updates")).json() if u["name"] == "pinned"] == []
    publish(registry_folder, live_document(echo_url, "2.2.0"), "live-2.2.0.json")
    pending = [u for u in (await owner.get("/registries/updates")).json() if u["name"] == "pinned"]
    assert pending == [
        {"name": "pinned", "registry": "local", "server": LIVE, "pinned": "2.1.0", "latest": "2.2.0", "error": None}
    ]
    stored = (await owner.get("/servers/pinned")).json()["config"]
    assert stored["registry"]["version"] == "2.1.0"  # nothing moves before a person approves
    moved = await owner.post("/servers/pinned/registry-update", json={})
    assert moved.status_code == 200, moved.text
    assert moved.json()["config"]["registry"]["version"] == "2.2.0"
    assert [u for u in (await owner.get("/registries/updates")).json() if u["name"] == "pinned"] == []
    await gateway.wait_for_servers("pinned")
    async with gateway.client() as client:  # the kept Authorization header still opens the upstream
        assert "kept" in str((await client.call_tool("pinned__echo", {"text": "kept"})).content)


async def test_a_package_is_a_command_an_operator_may_not_import(gateway: Gateway, owner: httpx.AsyncClient) -> None:
    assert gateway.admin is not None
    operator = await principal_token(gateway.admin, gateway.admin_token, "oscar@example.com", {"role": "operator"})
    body: dict[str, Any] = {"registry": "local", "server": "io.modelcontextprotocol.anonymous/brave-search"}
    body |= {"name": "brave", "values": {"BRAVE_API_KEY": "brave-key"}}
    headers = {"Authorization": f"Bearer {operator}"}
    async with httpx.AsyncClient(base_url=gateway.admin_api, headers=headers, timeout=30) as http:
        refused = await http.post("/servers/import", json=body)
    assert refused.status_code == 403 and refused.json()["permission"] == "servers:command"
    assert (await owner.get("/servers/brave")).status_code == 404
    made = await owner.post("/servers/import", json=body | {"version": "1.0.2"})
    assert made.status_code == 201, made.text
    assert made.json()["config"]["command"] == "npx"
    assert made.json()["config"]["args"] == ["-y", "@modelcontextprotocol/server-brave-search@1.0.2"]
    assert (await owner.delete("/servers/brave")).status_code == 204


async def test_the_cli_imports_from_a_registry(gateway: Gateway, owner: httpx.AsyncClient) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")} | {"COLUMNS": "200"}
    connection = ["--admin-url", gateway.admin_api.removesuffix("/admin/v1"), "--admin-token", gateway.admin_token]
    argv = ["servers", "add", "--registry", "local", f"{LIVE}@2.1.0", "--as", "cliecho"]
    argv += ["-H", f"Authorization={UPSTREAM_SECRET}", *connection]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    assert f"added server 'cliecho' from local ({LIVE} 2.1.0, remote:0)" in out.decode()
    await poll_until(lambda: gateway.ingress.catalog.server_status("cliecho") is not None, "cliecho in the catalog", 30)


async def test_a_registrys_credentials_appear_in_no_answer(owner: httpx.AsyncClient) -> None:
    listed = await owner.get("/registries")
    assert listed.json()["private"] == "http://127.0.0.1:9" and "reg-pass" not in listed.text
    down = await owner.get("/registries/private/servers")  # nothing listens there
    assert down.status_code == 502 and "registry 'private'" in down.json()["message"]
    assert "reg-pass" not in down.text and "reg-user" not in down.text


async def test_the_cli_gives_an_input_by_its_value_hint_and_refuses_an_unknown_name(
    gateway: Gateway, owner: httpx.AsyncClient, registry_folder: Path
) -> None:
    """`--value port=9000` reaches the flag whose valueHint is `port` (not its default 8080); a name
    the package has no input for is refused, naming the ones it has, and nothing is written."""
    publish(registry_folder, json.loads(HINTED.read_text()), "value-hints.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")} | {"COLUMNS": "200"}
    connection = ["--admin-url", gateway.admin_api.removesuffix("/admin/v1"), "--admin-token", gateway.admin_token]
    base = ["servers", "add", "--registry", "local", "io.github.example/notes-hints", "--as", "hints", *connection]
    given = ["--value", "port=9000", "--value", "notes_dir=/srv/notes", "--env", "NOTES_TOKEN=t-1"]

    async def cli(*argv: str) -> tuple[int | None, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli",
            *base,
            *argv,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode, out.decode()

    code, said = await cli(*given, "--value", "prot=9001")
    assert code != 0 and "no input is named prot" in said, said
    assert "--listen-port or port" in said and "NOTES_LOG_LEVEL or log_level" in said
    assert (await owner.get("/servers/hints")).status_code == 404
    code, said = await cli(*given, "--value", "log_level=debug")
    assert code == 0, said
    try:
        config = (await owner.get("/servers/hints")).json()["config"]
        assert config["args"] == ["-y", "@example/notes-mcp@0.3.0", "--listen-port", "9000", "/srv/notes"]
        assert set(config["env"]) == {"NOTES_LOG_LEVEL", "NOTES_TOKEN"}  # their values are answered masked
        assert config["registry"]["inputs"] == {"--listen-port": "9000", "notes_dir": "/srv/notes"}
    finally:
        assert (await owner.delete("/servers/hints")).status_code == 204
