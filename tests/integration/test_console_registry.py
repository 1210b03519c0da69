"""Adding a server from an MCP Registry in the console, in a real browser against a real stack: a local
registry (tests/support/mcp_registry.py) serving the registry's published examples and one whose
remote is a real echo server. The owner searches, chooses it, is asked for the secret header it
declares (refused until given), imports it, and its tool is then called through the gateway; a
package is offered as a command, and an operator's import of one is refused naming `servers:command`."""

from __future__ import annotations

import shutil
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.admin.service import AdminService
from tests.support.admin_api import principal_token
from tests.support.console_browser import CONSOLE_ARTIFACTS, Page, open_console
from tests.support.console_chromium import Chromium, module_chromium
from tests.support.console_stack import console_stack
from tests.support.gateway import ADMIN_KEY, Gateway, default_config, example_server_over_http
from tests.support.mcp_registry import LIVE, PUBLISHED, live_document, publish
from tests.support.processes import serving_process

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
_TLS = ssl.create_default_context()
"""One for every client of the admin API: each new one would read the CA bundle again (tens of ms of CPU)."""
SECRET = "Bearer console-registry-secret-5521"


@dataclass
class Stack:
    gateway: Gateway
    admin: AdminService
    owner: str
    operator: str
    folder: Path
    """The registry's documents: a test publishes a new version by writing one."""
    echo: str

    def api(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.owner}"}
        return httpx.AsyncClient(base_url=f"{self.admin.url}/admin/v1", headers=headers, timeout=30, verify=_TLS)


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("console-registry")
    folder = tmp / "registry"
    folder.mkdir()
    for file in sorted(PUBLISHED.glob("*.json")):
        shutil.copy(file, folder / file.name)
    argv = [sys.executable, "-m", "tests.support.mcp_registry", str(folder)]
    with serving_process(argv, "the local MCP registry") as registry:
        async with example_server_over_http("--http") as echo:
            publish(folder, live_document(echo, "2.1.0"), "live.json")
            admin_options = {"registries": {"local": registry}}
            async with console_stack(tmp, default_config(), admin_options) as (gateway, admin, owner):
                operator = await principal_token(admin, owner, "otto@example.com", {"role": "operator"})
                yield Stack(gateway, admin, owner, operator, folder, echo)


chromium = module_chromium  # one browser for the module, a tab per test


async def _registry_panel(page: Page, stack: Stack, token: str) -> None:
    await open_console(page, f"{stack.admin.url}/console", token, "servers")
    await page.click("#server-from-registry")
    await page.shown("#registry-select")


async def _choose(page: Page, search: str, server: str) -> None:
    await page.fill("#registry-search", search)
    await page.click("#registry-go")
    await page.shown(f"tr[data-registry-server='{server}']")
    await page.click(f"tr[data-registry-server='{server}'] button")
    await page.shown("#registry-importer")


async def test_a_registry_server_is_imported_in_the_browser_and_called(stack: Stack, chromium: Chromium) -> None:
    async with chromium.page() as page:
        await _registry_panel(page, stack, stack.owner)
        await _choose(page, "remote-echo", LIVE)
        assert "(required)" in await page.text("label[data-input='Authorization']")
        assert (
            await page.evaluate("document.querySelector(\"label[data-input='Authorization'] input\").type")
            == "password"
        )
        await page.fill("#registry-name", "fromreg")
        await page.click("#registry-import")  # the secret header not given yet
        await page.shown("#registry-importer .error")
        assert "give a value for: Authorization (secret)" in await page.text("#registry-importer .error")
        await page.fill("label[data-input='Authorization'] input", SECRET)
        await page.screenshot(CONSOLE_ARTIFACTS / "console-registry-import.png")
        await page.click("#registry-import")
        await page.wait(
            "document.querySelector(\"#servers-table tr[data-server='fromreg']\")?.innerText.includes('healthy')",
            "the imported server connected by the executor",
        )
        assert page.errors == []
    async with stack.api() as api:
        stored = (await api.get("/servers/fromreg")).json()["config"]
    assert stored["registry"]["version"] == "2.1.0" and SECRET not in str(stored)
    async with stack.gateway.client(ADMIN_KEY) as client:
        assert "via the console" in str((await client.call_tool("fromreg__echo", {"text": "via the console"})).content)


async def test_a_newer_version_waits_in_the_console_until_approved(stack: Stack, chromium: Chromium) -> None:
    async with stack.api() as api:
        body = {"registry": "local", "server": LIVE, "name": "tobump", "values": {"Authorization": SECRET}}
        assert (await api.post("/servers/import", json=body)).status_code == 201
    publish(stack.folder, live_document(stack.echo, "2.2.0"), "live-2.2.0.json")
    async with chromium.page() as page:
        await open_console(page, f"{stack.admin.url}/console", stack.owner, "servers")
        await page.click("#server-updates")
        await page.shown("#registry-updates tr[data-update='tobump']")
        row = await page.text("#registry-updates tr[data-update='tobump']")
        assert "2.1.0" in row and "2.2.0" in row
        async with stack.api() as api:  # waiting: nothing moved yet
            assert (await api.get("/servers/tobump")).json()["config"]["registry"]["version"] == "2.1.0"
        await page.click("#registry-updates tr[data-update='tobump'] button")
        await page.wait("!document.querySelector(\"#registry-updates tr[data-update='tobump']\")", "the update applied")
        assert page.errors == []
    async with stack.api() as api:
        moved = (await api.get("/servers/tobump")).json()["config"]
    assert moved["registry"]["version"] == "2.2.0" and moved["headers"]["Authorization"] != SECRET  # kept, masked


async def test_a_package_is_offered_as_a_command_and_an_operator_may_not_import_it(
    stack: Stack, chromium: Chromium
) -> None:
    async with chromium.page(width=1366, height=768) as page:  # a laptop's screen
        await _registry_panel(page, stack, stack.operator)
        await _choose(page, "weather-mcp", "io.github.example/weather-mcp")
        width = await page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert width[0] <= width[1], f"the importer scrolls sideways ({width})"
        assert "pypi package weather-mcp-server@0.5.0 (runs as a command)" in await page.text("#registry-choice")
        assert "celsius" in await page.evaluate(
            "document.querySelector(\"label[data-input='WEATHER_UNITS'] input\").placeholder"
        )
        await page.fill("label[data-input='WEATHER_API_KEY'] input", "weather-key")
        await page.click("#registry-import")
        await page.shown("#registry-importer .error")
        assert "servers:command" in await page.text("#registry-importer .error")
    async with stack.api() as api:
        assert (await api.get("/servers/weather-mcp")).status_code == 404
