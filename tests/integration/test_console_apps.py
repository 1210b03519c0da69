"""An MCP App in the console's playground, in a real browser against a real stack.

The upstream (`tests/support/app_frame_server.py`) serves an app and a tool only the app may call.
The playground calls the tool that names the app, reads the app through the gateway as the key,
renders it in a sandboxed frame under the policy the app declared, and speaks the ext-apps protocol
with it; the app's Move button (clicked as a person clicks) calls the app-only tool through the
gateway, audited as the app's call, while an agent's `tools/list` never shows that tool; the app's
Wipe button asks for a tool only the model may call, and the playground refuses it to the app.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from libs.common.contracts.keys import key_id
from libs.common.web.guarded_http import shared_tls
from services.admin.service import AdminService
from tests.support.admin_api import base_url
from tests.support.console_browser import CONSOLE_ARTIFACTS, Page, open_console
from tests.support.console_chromium import Chromium, module_chromium
from tests.support.console_stack import console_stack
from tests.support.gateway import ADMIN_KEY, READS_EXAMPLES, Gateway, default_config
from tests.support.ingress_trail import settled_trail

pytestmark = pytest.mark.integration

APP_SERVER = Path(__file__).resolve().parents[1] / "support" / "app_frame_server.py"
APP = "ui://board/board/app.html"


class Stack(NamedTuple):
    gateway: Gateway
    admin: AdminService
    owner: str


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("console-apps")
    board = {"command": sys.executable, "args": [str(APP_SERVER)], "sandbox": READS_EXAMPLES}
    async with console_stack(tmp, default_config({"board": board})) as (gateway, admin, owner):
        await gateway.wait_for_servers("board")
        yield Stack(gateway, admin, owner)


chromium = module_chromium


async def _click_in_app(page: Page, x: int, y: int) -> None:
    """A person's click at (x, y) of the app's frame: the frame is another origin, so no script of the
    console's could click inside it."""
    # scrolled, then two frames painted: the browser routes a click into a frame by what it last painted
    box = await page.evaluate(
        "new Promise((done) => { const f = document.querySelector('#play-app'); f.scrollIntoView({block: 'center'});"
        " requestAnimationFrame(() => requestAnimationFrame(() => {"
        " const r = f.getBoundingClientRect(); done({x: r.left, y: r.top}); })); })"
    )
    point = {"x": box["x"] + x, "y": box["y"] + y, "button": "left", "clickCount": 1}
    await page.send("Input.dispatchMouseEvent", type="mouseMoved", x=point["x"], y=point["y"])
    await page.send("Input.dispatchMouseEvent", type="mousePressed", **point)
    await page.send("Input.dispatchMouseEvent", type="mouseReleased", **point)


async def _logged(page: Page, selector: str, said: str, what: str) -> str:
    """The text of the first entry of the app's log matching `selector` that says `said`, once there is one."""
    found = (
        f"[...document.querySelectorAll({f'#play-app-log li{selector}'!r})]"
        f".map((li) => li.innerText).find((text) => text.includes({said!r}))"
    )
    return str(await page.wait(found, what))


async def test_an_app_renders_in_the_playground_and_its_button_calls_an_app_only_tool(
    stack: Stack, chromium: Chromium
) -> None:
    async with stack.gateway.client(ADMIN_KEY) as agent:  # the model's view: no extension declared
        names = {tool.name for tool in (await agent.list_tools()).tools}
    assert "board__show_board" in names and "board__move_card" not in names
    async with chromium.page() as page:
        await open_console(page, f"{stack.admin.url}/console", stack.owner, "playground")
        await page.shown(f"#play-key option[value='{key_id(ADMIN_KEY)}']")  # a key's id is its secret's sha256
        for field, value in (("#play-key", key_id(ADMIN_KEY)), ("#play-secret", ADMIN_KEY)):
            await page.fill(field, value)
        await page.click("#play-list")
        await page.shown("#play-tool option[value='board__show_board']")
        assert not await page.evaluate("!!document.querySelector(\"#play-tool option[value='board__move_card']\")")
        await page.fill("#play-tool", "board__show_board")
        await page.click("#play-call")
        await page.shown("#play-app")
        assert await page.evaluate("document.querySelector('#play-app').getAttribute('sandbox')") == "allow-scripts"
        await _logged(page, "[data-method='ui/initialize']", '"name":"board"', "the app's handshake")
        await _logged(page, "[data-method='notifications/message']", "the board: 3 cards", "the tool's result shown")
        csp = "the app's policy refused a request it does not allow"
        await _logged(page, "[data-outcome='warning']", "csp refused connect-src", csp)

        await _click_in_app(page, 60, 28)  # Move
        called = "the app-only tool called"
        await _logged(page, "[data-tool='move_card'][data-outcome='ok']", "board__move_card", called)
        await _logged(page, "[data-outcome='info']", "move_card: ok moved card 1 (1 moves)", "the app shows its answer")
        await _click_in_app(page, 200, 28)  # Wipe: a tool only the model may call
        refused = "the model's tool refused to the app"
        await _logged(page, "[data-tool='wipe_board'][data-outcome='refused']", "not visible to apps", refused)
        await _logged(page, "[data-outcome='info']", "wipe_board: refused", "the app told")
        await page.screenshot(CONSOLE_ARTIFACTS / "console-playground-app.png")
        assert page.errors == []
    rows = await settled_trail(stack.gateway)
    assert {row.initiator for row in rows if row.name == "board__move_card"} == {"app"}
    assert not [row for row in rows if row.name == "board__wipe_board"]  # refused before the gateway


async def test_an_app_frame_is_served_once_under_its_policy_and_calls_stay_on_its_server(stack: Stack) -> None:
    owner = {"Authorization": f"Bearer {stack.owner}"}
    async with httpx.AsyncClient(base_url=base_url(stack.admin), headers=owner, verify=shared_tls()) as api:
        opened = (await api.post("/console/playground/app", json={"secret": ADMIN_KEY, "uri": APP})).json()
        assert opened["ok"], opened
        assert ADMIN_KEY not in str(opened)
        async with httpx.AsyncClient(base_url=stack.admin.url, verify=shared_tls()) as anyone:
            served = await anyone.get(f"/console/app-frame/{opened['frame']}")
            again = await anyone.get(f"/console/app-frame/{opened['frame']}")
        policy = served.headers["content-security-policy"]
        assert served.status_code == 200 and 'id="move"' in served.text
        assert "connect-src https://api.example.com;" in policy and "sandbox allow-scripts" in policy
        assert "default-src 'none'" in policy and "'self'" not in policy.split("frame-ancestors")[0]
        assert again.status_code == 404
        body = {"secret": ADMIN_KEY, "uri": APP, "tool": "echo__echo", "arguments": {"text": "hi"}}
        elsewhere = (await api.post("/console/playground/app-call", json=body)).json()
        assert not elsewhere["ok"] and "not a tool of the server that served this app" in elsewhere["error"]
        missing = (
            await api.post("/console/playground/app", json={"secret": ADMIN_KEY, "uri": "ui://board/nope"})
        ).json()
        assert not missing["ok"] and missing["frame"] is None
