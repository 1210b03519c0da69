"""Keys in the console, and the calls made with them as live traffic shows them.

A key issued in the UI is used by an agent and in the playground and both calls appear in live
traffic; keys are revoked in bulk; a new secret copies with one click; a tool error is named once.
"""

from __future__ import annotations

import pytest

from tests.support.console_chromium import Chromium
from tests.support.console_views import Stack, _shot, _signed_in
from tests.support.gateway import ADMIN_KEY

pytestmark = pytest.mark.integration


async def test_a_key_issued_in_the_ui_is_used_and_its_calls_appear_in_live_traffic(
    stack: Stack, chromium: Chromium
) -> None:
    async with chromium.page() as page:
        await _signed_in(page, stack, view="keys")
        await page.click("#key-new")
        await page.fill("#key-name", "console-made")
        await page.fill("#key-budget", "5")
        await page.fill("#grant-search", "echo")
        await page.click("#key-issue tr[data-grant='echo/echo']")  # picked from the catalog
        await page.click("#key-create")
        await page.shown("#key-secret-value")
        secret = (await page.text("#key-secret-value")).strip()
        assert secret.startswith("bk_")
        async with stack.api() as api:
            made = next(k for k in (await api.get("/keys")).json() if k["name"] == "console-made")
        assert made["grants"] == ["echo/echo"] and made["budget"] == {"limit_usd": 5.0, "period": "month"}

        # an agent uses it: the official client through the gateway
        async with stack.gateway.client(key=secret) as client:
            answer = await client.call_tool("echo__echo", {"text": "from an agent"})
            assert not answer.is_error

        # ... and the person tries it in the playground, where the tab still holds the secret
        await page.click("#key-try")
        await page.wait("document.body.dataset.view === 'playground'", "the playground")
        await page.wait("document.querySelector('#play-secret')?.value.length > 0", "the secret carried over")
        await page.click("#play-list")
        await page.shown("#play-tool")
        assert await page.evaluate("[...document.querySelectorAll('#play-tool option')].map(o => o.value)") == [
            "",
            "echo__echo",
        ]  # what the key may call, as the gateway lists it
        await page.fill("#play-tool", "echo__echo")
        await page.fill("#arg-text", "from the playground")
        await page.click("#play-call")
        await page.shown("#play-result")
        assert "from the playground" in await page.text("#play-result")
        await page.shown("#play-audit")  # the call's own audit row
        audit = await page.text("#play-audit")
        assert "console-made" in audit and "echo__echo" in audit and "ok" in audit
        assert "from the playground" in await page.text("#event-arguments")  # the admin token may see payloads
        await _shot(page, "console-playground-call")

        await page.click("#nav-traffic")
        await page.fill("#filter-key", "console-made")
        await page.wait(
            "document.querySelectorAll('#traffic-table tr[data-tool=\"echo__echo\"]').length === 2",
            "both calls of the key in live traffic",
        )
        await page.click("#traffic-table tr[data-tool='echo__echo']")
        await page.shown("#event-detail")
        detail = await page.text("#event-detail")
        assert "ms upstream" in detail and "trace id" in detail
        await _shot(page, "console-traffic")
        assert page.errors == []


async def test_many_keys_are_revoked_at_once(stack: Stack, chromium: Chromium) -> None:
    async with stack.api() as api:
        for name in ("bulk-1", "bulk-2", "bulk-3"):
            assert (await api.post("/keys", json={"name": name, "grants": ["echo/echo"]})).status_code == 201
    async with chromium.page() as page:
        await _signed_in(page, stack, view="keys")
        for name in ("bulk-1", "bulk-2"):
            await page.click(f"#keys-table tr[data-key='{name}'] input[type=checkbox]")
        await page.click("#keys-revoke-selected")
        await page.wait(
            "document.querySelector(\"#keys-table tr[data-key='bulk-2']\")?.innerText.includes('revoked')",
            "the revoked keys",
        )
    async with stack.api() as api:
        revoked = {k["name"]: k["revoked"] for k in (await api.get("/keys")).json() if k["name"].startswith("bulk-")}
    assert revoked == {"bulk-1": True, "bulk-2": True, "bulk-3": False}


async def test_a_new_secret_reads_as_written_and_copies_with_one_click(stack: Stack, chromium: Chromium) -> None:
    async with chromium.page() as page:
        await _signed_in(page, stack, view="keys")
        await page.click("#key-new")
        await page.fill("#key-name", "copied")
        await page.click("#key-create")
        await page.shown("#key-secret-value")
        assert "Authorization: Bearer <secret>" in await page.text("#key-secret")
        secret = (await page.text("#key-secret-value")).strip()
        # the browser lets this origin use the clipboard, as a person's browser does once asked
        clipboard = ["clipboardReadWrite", "clipboardSanitizedWrite"]
        await page.send("Browser.grantPermissions", permissions=clipboard, origin=stack.admin.url)
        await page.send("Emulation.setFocusEmulationEnabled", enabled=True)  # a headless page never has the focus
        await page.click("#key-secret-copy")
        await page.wait("document.querySelector('#key-secret-copy').dataset.said !== 'Copy'", "the copy's outcome")
        assert await page.text("#key-secret-copy") == "Copied"
        assert await page.evaluate("navigator.clipboard.readText()") == secret
        assert page.errors == []


async def test_a_tool_error_in_live_traffic_is_named_once(stack: Stack, chromium: Chromium) -> None:
    async with stack.gateway.client(ADMIN_KEY) as client:
        assert (await client.call_tool("echo__fail", {"message": "on purpose"})).is_error
    async with chromium.page() as page:
        await _signed_in(page, stack, view="traffic")
        await page.fill("#filter-tool", "echo__fail")
        await page.shown("#traffic-table tr[data-tool='echo__fail']")
        row = await page.text("#traffic-table tr[data-tool='echo__fail']")
        assert row.count("tool_error") == 1, row
        assert page.errors == []
