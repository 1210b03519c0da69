"""Pin approvals in the console's catalog, in a real browser against a real stack whose upstream
changes its own tool definitions at run time (`tests/support/drifting_server.py`, driven by a file):
the console lists what waits, shows the drift diff, and an owner's Approve in the browser makes the
new definition callable (a real call through the gateway) while Reject keeps it out; a viewer sees
what waits but no button, and the API refuses the decision (403)."""

from __future__ import annotations

import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.admin.service import AdminService
from tests.support.admin_api import principal_token
from tests.support.console_browser import CONSOLE_ARTIFACTS, Page, open_console
from tests.support.console_chromium import Chromium, module_chromium
from tests.support.console_stack import console_stack
from tests.support.gateway import ADMIN_KEY, Gateway, default_config
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
_TLS = ssl.create_default_context()
"""One for every client of the admin API: each new one would read the CA bundle again (tens of ms of CPU)."""
DRIFTING = ROOT / "tests" / "support" / "drifting_server.py"


@dataclass
class Stack:
    gateway: Gateway
    admin: AdminService
    owner: str
    viewer: str
    state: Path
    """What the drifting upstream serves (a variant name: base, property, default, description)."""

    def api(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token or self.owner}"}
        return httpx.AsyncClient(base_url=f"{self.admin.url}/admin/v1", headers=headers, timeout=30, verify=_TLS)

    async def drift_to(self, variant: str) -> dict[str, Any]:
        """Make the upstream serve `variant`; the pending record once pinning holds it back."""
        self.state.write_text(variant)

        async def held() -> dict[str, Any] | None:
            async with self.api() as api:
                waiting = (await api.get("/tools/pending")).json()
            return next((w for w in waiting if (w["server"], w["name"]) == ("drift", "add")), None)

        # each look is an HTTP request to the admin service: not at the 20 ms that in-process checks poll at
        return await poll_until(held, f"drift/add ({variant}) held back for approval", every=0.1)

    def listed(self) -> bool:
        status = self.gateway.ingress.catalog.server_status("drift")
        return status is not None and status.status == "ready" and any(t.tool == "add" for t in status.tools)


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("console-pins")
    state, calls = tmp / "state", tmp / "calls"
    state.write_text("base")
    config = default_config(
        {
            "drift": {
                "command": sys.executable,
                "args": [str(DRIFTING), str(state), str(calls)],
                "sandbox": {"write": [str(calls.parent)]},
            }
        }
    )
    async with console_stack(tmp, config) as (gateway, admin, owner):
        viewer = await principal_token(admin, owner, "vera@example.com", {"role": "viewer"}, kind="person")
        yield Stack(gateway, admin, owner, viewer, state)


chromium = module_chromium  # one browser for the module, a tab per test


async def _catalog(page: Page, stack: Stack, token: str) -> None:
    await open_console(page, f"{stack.admin.url}/console", token, "catalog")


async def test_an_owner_sees_the_drift_and_approves_or_rejects_it_in_the_browser(
    stack: Stack, chromium: Chromium
) -> None:
    async with stack.gateway.client(ADMIN_KEY) as client:  # trusted on first use
        assert (await client.call_tool("drift__add", {"a": 1, "b": 2})).content[0].text == "3"
    waiting = await stack.drift_to("property")
    async with chromium.page() as page:
        await _catalog(page, stack, stack.owner)
        await page.shown("#pending-approvals tr[data-pending='drift/add']")
        assert await page.text("#pending-count") == "1"
        await page.click("#pending-approvals tr[data-pending='drift/add']")
        await page.shown("#pin-diff")
        assert "property 'note' added" in await page.text("#pin-diff")
        assert waiting["pending"][:12] in await page.text("#pin-waiting")
        await page.screenshot(CONSOLE_ARTIFACTS / "console-pin-drift.png")
        await page.click("#pin-approve")
        await page.shown("#pin-decided")
        await page.wait("!document.querySelector('#pending-approvals')", "nothing waiting any more")

        await poll_until(stack.listed, "drift/add served again")
        async with stack.gateway.client(ADMIN_KEY) as client:  # the approved definition, called for real
            assert (await client.call_tool("drift__add", {"a": 2, "b": 3, "note": "n"})).content[0].text == "5"
        await page.fill("#catalog-search", "drift add")
        await page.click("#catalog-table tr[data-tool='drift__add']")
        await page.wait(
            "document.querySelector('#pin-state')?.innerText.includes('by test-owner')", "the approval in the pin"
        )
        assert '"note"' in await page.text("#tool-detail pre")  # the new definition is the one served

        await stack.drift_to("default")  # another change: this one the owner rejects
        await page.click("#nav-servers")  # back to the catalog: it asks what waits again
        await page.click("#nav-catalog")
        await page.click("#pending-approvals tr[data-pending='drift/add']")
        await page.shown("#pin-diff")
        assert "default of 'retries' changed: 3 -> 0" in await page.text("#pin-diff")
        await page.click("#pin-reject")
        await page.shown("#pin-decided")
        await page.wait("!document.querySelector('#pending-approvals')", "nothing waiting after the reject")
        assert page.errors == []
    async with stack.api() as api:
        pin = (await api.get("/tools/drift/add/pin")).json()
    assert pin["pending"] is None and pin["rejected"] == 1 and pin["approved_by"] == "test-owner"
    assert not stack.listed()  # the rejected definition stays out


async def test_a_viewer_sees_what_waits_without_buttons_and_the_api_refuses_the_decision(
    stack: Stack, chromium: Chromium
) -> None:
    waiting = await stack.drift_to("description")
    async with chromium.page() as page:
        await _catalog(page, stack, stack.viewer)
        await page.click("#pending-approvals tr[data-pending='drift/add']")
        await page.shown("#pin-diff")
        assert "description changed" in await page.text("#pin-diff")
        assert "tools:approve" in await page.text("#pin-state")
        assert await page.evaluate("document.querySelectorAll('#pin-approve, #pin-reject').length") == 0
        await page.screenshot(CONSOLE_ARTIFACTS / "console-pin-viewer.png")
        assert page.errors == []
    async with stack.api(stack.viewer) as api:
        refused = await api.post("/tools/drift/add/approve", json={"sha256": waiting["pending"]})
    assert refused.status_code == 403 and refused.json()["permission"] == "tools:approve"
    async with stack.api() as api:  # still waiting: the refusal changed nothing
        assert [w["pending"] for w in (await api.get("/tools/pending")).json()] == [waiting["pending"]]


async def _serve_what_waits(stack: Stack) -> None:
    """Approve whatever definition of drift/add waits, and wait until it is listed again."""
    async with stack.api() as api:
        for waiting in (await api.get("/tools/pending")).json():
            approved = await api.post("/tools/drift/add/approve", json={"sha256": waiting["pending"]})
            assert approved.status_code == 200, approved.text
    await poll_until(stack.listed, "drift/add listed")


async def test_the_playground_form_shows_the_schema_defaults(stack: Stack, chromium: Chromium) -> None:
    await _serve_what_waits(stack)
    async with stack.api() as api:
        admin = next(k for k in (await api.get("/keys")).json() if k["name"] == "admin")
    async with chromium.page() as page:
        await open_console(page, f"{stack.admin.url}/console", stack.owner, "playground")
        await page.shown(f"#play-key option[value='{admin['id']}']")
        await page.fill("#play-key", admin["id"])
        await page.fill("#play-secret", ADMIN_KEY)
        await page.click("#play-list")
        await page.shown("#play-tool option[value='drift__add']")
        await page.fill("#play-tool", "drift__add")
        await page.shown("#arg-retries")
        assert await page.text("[data-default='retries']") == "(default: 3)"
        assert await page.evaluate("document.querySelector('#arg-retries').placeholder") == "3"
        assert await page.evaluate("document.querySelectorAll('[data-default]').length") == 1  # a and b have none
        assert page.errors == []


async def test_an_open_catalog_drops_a_tool_pinning_withholds_and_says_so(stack: Stack, chromium: Chromium) -> None:
    await _serve_what_waits(stack)
    async with chromium.page() as page:
        await _catalog(page, stack, stack.owner)
        await page.fill("#catalog-search", "drift add")
        await page.click("#catalog-table tr[data-tool='drift__add']")
        await page.wait("document.querySelector('#pin-listed')?.innerText === 'yes'", "listed and served")
        await stack.drift_to("property")  # the upstream changes it while the page is open
        await page.wait("!document.querySelector(\"#catalog-table tr[data-tool='drift__add']\")", "the row gone")
        await page.shown("#tool-withheld")
        await page.wait(
            "document.querySelector('#pin-listed')?.innerText.startsWith('no: withheld')", "the pin says withheld"
        )
        assert "not listed or callable" in await page.text("#tool-withheld")
        assert page.errors == []
