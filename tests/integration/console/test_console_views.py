"""The console's views as a person meets them: signing in, every view loading, the navigation.

The sign-in page's words and its refusal of a wrong token, every view against the running stack,
the dashboard carrying the console's navigation for each role, and every view reached by keyboard
and fitting a laptop's screen.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.console_browser import Page
from tests.support.console_chromium import Chromium
from tests.support.console_views import Stack, _created_in_directory, _laptop_check, _shot, _signed_in

pytestmark = pytest.mark.integration


async def test_the_login_page_says_where_the_first_token_is_and_refuses_a_wrong_one(
    stack: Stack, chromium: Chromium
) -> None:
    async with chromium.page() as page:
        await page.open(stack.console)
        await page.wait("document.body.dataset.state === 'login'", "the sign-in form")
        assert "stack.json" in await page.text("main")
        await _shot(page, "console-login")
        await page.fill("#login-token", "not-a-token")
        await page.click("#login-open")
        await page.wait("!!document.querySelector('.error')", "the refusal")
        assert "refused" in await page.text(".error")
        assert await page.evaluate("document.body.dataset.state") == "login"
        assert page.errors == []


async def test_every_view_loads_against_the_running_stack(stack: Stack, chromium: Chromium) -> None:
    async with chromium.page() as page:
        await _signed_in(page, stack)
        await page.shown("#servers-table tr[data-server='echo']")
        await page.wait("document.querySelectorAll('#servers-table tbody tr').length === 3", "three servers")
        many = await page.text("#servers-table tr[data-server='many']")
        assert "healthy" in many and "1200" in many
        await _shot(page, "console-servers")

        async with stack.api() as api:
            total = sum(s["tools"] for s in (await api.get("/servers")).json())
        assert total > 1200
        await page.click("#nav-catalog")
        await page.wait(
            f"document.querySelector('#catalog-count')?.innerText.startsWith('{total} tools')", "every tool"
        )
        assert await page.evaluate("document.querySelectorAll('#catalog-table tbody tr').length") == 50  # one page
        await page.fill("#catalog-search", "invoice 0150")
        await page.wait("document.querySelector('#catalog-count')?.innerText.startsWith('1 tool matches')", "one match")
        await page.click("#catalog-table tr[data-tool='many__invoice_0150']")
        await page.shown("#tool-detail pre")
        assert '"name": "invoice_0150"' in await page.text("#tool-detail pre")
        await page.wait(  # its pin: trusted on first use (pinning is on by default)
            "document.querySelector('#pin-state')?.innerText.includes('by tofu')", "the tool's pin state"
        )
        await _shot(page, "console-catalog")

        for view, ready in (
            ("keys", "#keys-table tr[data-key='admin']"),
            ("groups", "#groups-table, .empty"),
            ("directory", "#directory-users"),
            ("providers", "#providers-table, .empty"),
            ("traffic", "#traffic-table, .empty"),
            ("playground", "#play-key"),
        ):
            await page.click(f"#nav-{view}")
            await page.shown(ready)
            await _shot(page, f"console-{view}")
        await page.click("#nav-directory")  # a customer and a team in it, made in the UI
        await _created_in_directory(page, "customers", "acme", {"name": "Acme"})
        team = await _created_in_directory(page, "teams", "payments", {"name": "Payments", "create select": "acme"})
        assert "acme" in team
        await _shot(page, "console-people")
        assert await page.evaluate("!!document.querySelector('#nav-dashboard')")
        assert page.errors == []


async def test_the_dashboard_carries_the_console_navigation_for_the_role(stack: Stack, chromium: Chromium) -> None:
    for token, expected in (
        (
            stack.owner,
            [
                *("servers", "catalog", "keys", "groups", "directory", "providers", "traffic", "playground"),
                *("export", "approvals"),
            ],
        ),
        (stack.analyst, ["traffic"]),
    ):
        async with chromium.page() as page:
            await page.open(f"{stack.admin.url}/dashboard#token={token}")
            await page.shown("#bastion-nav #nav-dashboard")
            links = await page.evaluate("[...document.querySelectorAll('#bastion-nav a')].map(a => a.id)")
            assert links == [f"nav-{name}" for name in [*expected, "dashboard"]]
            assert await page.evaluate("document.querySelector('#nav-traffic').getAttribute('href')") == (
                "/console#/traffic"
            )
            if token == stack.owner:
                await _shot(page, "dashboard-with-console-navigation")
            assert page.errors == []


# What shows a view has its data: its table, or its empty state.
_READY = {
    "servers": "#servers-table",
    "catalog": "#catalog-table",
    "keys": "#keys-table",
    "groups": "#groups-table, .empty",
    "directory": "#directory-users",
    "providers": "#providers-table, .empty",
    "traffic": "#traffic-table, .empty",
    "playground": "#play-key",
    "export": "#export-run",
    "approvals": "#approvals-table, .empty",
}


async def _tab_to(page: Page, start: str, selector: str, what: str) -> None:
    """Put the focus on `start`, then press Tab until the focus is on `selector`, as a person would."""
    await page.evaluate(f"document.querySelector({start!r}).focus()")
    for _ in range(25):
        if await page.evaluate(f"!!document.activeElement?.matches({selector!r})"):
            return
        await page.press("Tab")
    focused = await page.evaluate("document.activeElement.outerHTML.slice(0, 200)")
    raise AssertionError(f"Tab never reached {what}; the focus is on {focused}")


async def _open_by_keyboard(page: Page, start: str, row: str, what: str, detail: str) -> None:
    """From `start`, Tab to a `row` that opens something and press Enter: its `detail` shows."""
    await _tab_to(page, start, row, what)
    await page.press("Enter")
    await page.shown(detail)


async def test_every_view_is_keyboard_reachable_and_fits_a_laptop_screen(stack: Stack, chromium: Chromium) -> None:
    async with stack.gateway.client() as client:  # a row in live traffic to open
        assert not (await client.call_tool("echo__echo", {"text": "for the keyboard"})).is_error
    roles = (("owner", stack.owner), ("viewer", stack.viewer), ("auditor", stack.auditor), ("analyst", stack.analyst))
    for role, token in roles:
        async with chromium.page(width=1366, height=768) as page:
            await page.open(f"{stack.console}#token={token}")
            await page.wait("document.body.dataset.state === 'ready'", f"the {role} signed in")
            views = await page.evaluate(
                "[...document.querySelectorAll('nav.main a[id^=nav-]')].map(a => a.id.slice(4))"
                ".filter(v => v !== 'dashboard')"
            )
            assert views, role
            for view in views:
                await page.click(f"#nav-{view}")
                await page.wait(f"document.body.dataset.view === {view!r}", f"the {view} view")
                await page.shown(_READY[view])
                if view == "export":  # the longest thing it shows: the whole configuration
                    await page.click("#export-run")
                    await page.shown("#export-text")
                await _laptop_check(page, f"{view} for the {role}")
            if await page.evaluate("!!document.querySelector('#nav-dashboard')"):  # one look with the console
                await page.open(f"{stack.admin.url}/dashboard#token={token}")
                await page.shown("#bastion-nav #nav-dashboard")
                await page.wait("document.querySelector('#status').innerText.startsWith('updated')", "the charts drawn")
                await _laptop_check(page, f"the dashboard for the {role}")
                await page.open(f"{stack.console}#/servers")
                await page.wait("document.body.dataset.state === 'ready'", f"the {role} back in the console")
            if role != "owner":
                continue
            # the rows that open something, by keyboard only: Tab to the row, Enter
            await page.click("#nav-catalog")
            await page.fill("#catalog-search", "echo")
            await page.shown("#catalog-table tr[data-tool='echo__echo']")
            await _open_by_keyboard(
                page, "#catalog-search", "#catalog-table tr.clickable", "a catalog row", "#tool-detail pre"
            )
            await _laptop_check(page, "a tool's detail")

            await page.click("#nav-traffic")
            await page.shown("#traffic-table tr.clickable")
            await _open_by_keyboard(
                page, "#filter-key", "#traffic-table tr.clickable", "a traffic row", "#event-detail"
            )
            await _laptop_check(page, "an event's detail")
            await _shot(page, "console-laptop-traffic")

            await page.click("#nav-keys")
            await page.click("#key-new")
            await page.fill("#grant-search", "echo")
            await page.shown("#key-issue tr[data-grant='echo/echo']")
            await _tab_to(page, "#grant-search", "#key-issue tr.clickable", "a grant to pick")
            picked = await page.evaluate("document.activeElement.dataset.grant")
            await page.press("Enter")
            await page.wait(
                f"[...document.querySelectorAll('#key-issue .tag')].some(t => t.innerText.includes({picked!r}))",
                "the grant picked by keyboard",
            )
            await _laptop_check(page, "issuing a key")
            assert page.errors == []


async def test_the_sign_in_page_explains_both_ways_in_with_the_exact_commands(stack: Stack, chromium: Chromium) -> None:
    async with chromium.page() as page:
        await page.open(stack.console)
        await page.wait("document.body.dataset.state === 'login'", "the sign-in form")
        text = " ".join((await page.text("main")).split())
        assert "<data dir>/stack.json" in text and "&lt;" not in text  # the placeholder, not its entity
        assert "the admin_token in <data dir>/stack.json (the data dir" in text  # words keep their spaces
        assert "for others: bastion principals create" in text
        assert "docs/console.md" in text and "No user exists until one is made" in text
        assert await page.text("#login-make-user") == "bastion users create alice --name Alice --password"
        assert "--user alice --role" in await page.text("#login-bind-user")
        assert await page.evaluate("document.querySelector('#sign-in').getAttribute('href')") == "/login?next=/console"
        assert page.errors == []
    async with httpx.AsyncClient(trust_env=False) as http:
        icon = await http.get(f"{stack.admin.url}/favicon.ico")
        landing_icon = await http.get(stack.gateway.url.removesuffix("/mcp") + "/favicon.ico")
    for answer in (icon, landing_icon):
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/x-icon"
        assert answer.content[:4] == b"\x00\x00\x01\x00" and b"PNG" in answer.content  # an ICO holding a PNG
