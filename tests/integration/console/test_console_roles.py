"""What each role sees and may do in the console, and that the API refuses the rest.

An analyst sees traffic without payloads, an auditor reads a call's arguments, a viewer reads the
configuration and changes nothing, a key manager of a team issues keys there and sees only its keys.
"""

from __future__ import annotations

import pytest

from tests.support.admin_api import principal_token
from tests.support.console_chromium import Chromium
from tests.support.console_views import Stack, _event_with_arguments, _shot, _signed_in

pytestmark = pytest.mark.integration


async def test_an_analyst_sees_traffic_without_payloads_and_nothing_else(stack: Stack, chromium: Chromium) -> None:
    async with stack.gateway.client() as client:  # a call with arguments to look at
        assert not (await client.call_tool("echo__echo", {"text": "analyst-must-not-read-this"})).is_error
    async with chromium.page() as page:
        await page.open(f"{stack.console}#token={stack.analyst}")
        await page.wait("document.body.dataset.state === 'ready'", "the analyst signed in")
        links = await page.evaluate("[...document.querySelectorAll('nav.main a')].map(a => a.id)")
        assert links == ["nav-traffic", "nav-dashboard"]  # analytics only: no servers, keys, playground
        assert "analyst@example.com (analyst)" in await page.text("#who")
        assert await page.evaluate("document.body.dataset.view") == "traffic"
        await page.open(f"{stack.console}#/keys")  # asking for the view by its address changes nothing
        await page.wait("document.body.dataset.view === 'traffic'", "the analyst kept out of keys")
        await page.fill("#filter-key", "admin")
        await page.click("#traffic-table tr[data-tool='echo__echo']")
        await page.shown("#event-payloads-hidden")
        assert "analyst-must-not-read-this" not in await page.text("main")
        await _shot(page, "console-analyst")
        assert page.errors == []
    async with stack.api(stack.analyst) as api:  # and the API refuses what the console hides
        for refused in (
            await api.get("/keys"),
            await api.get("/console/catalog"),
            await api.post("/console/playground/call", json={"secret": "bk_x", "tool": "echo__echo"}),
        ):
            assert refused.status_code == 403, refused.text


async def test_an_auditor_reads_the_arguments_and_results_of_a_call(stack: Stack, chromium: Chromium) -> None:
    async with stack.gateway.client() as client:
        assert not (await client.call_tool("echo__echo", {"text": "for-the-auditor"})).is_error
    # Other tests of this module call echo__echo as the same key: open this call's own row, not the newest
    event_id = await _event_with_arguments(stack, "for-the-auditor")
    async with chromium.page() as page:
        await _signed_in(page, stack, stack.auditor, view="traffic")
        await page.fill("#filter-key", "admin")
        await page.click(f"#traffic-table tr[data-event='{event_id}']")
        await page.shown("#event-arguments")
        await page.wait(
            "document.querySelector('#event-detail')?.innerText.includes('for-the-auditor')", "the arguments"
        )
        assert page.errors == []


async def test_a_viewer_reads_the_configuration_and_changes_nothing(stack: Stack, chromium: Chromium) -> None:
    async with chromium.page() as page:
        await _signed_in(page, stack, stack.viewer, view="keys")
        await page.shown("#keys-table tr[data-key='admin']")
        links = await page.evaluate("[...document.querySelectorAll('nav.main a')].map(a => a.id)")
        assert links == [
            *("nav-servers", "nav-catalog", "nav-keys", "nav-groups", "nav-directory", "nav-providers"),
            *("nav-playground", "nav-export"),
        ]
        buttons = "document.querySelectorAll('#key-new, #keys-table input[type=checkbox], [data-revoke]').length"
        assert await page.evaluate(buttons) == 0  # no issue, select or revoke
        await page.click("#nav-servers")
        await page.shown("#servers-table tr[data-server='echo']")
        assert await page.evaluate("document.querySelectorAll('#server-add, #servers-table button').length") == 0
        await page.click("#nav-export")
        await page.shown("#export-run")
        assert await page.evaluate("document.querySelectorAll('#import-panel, #export-edit').length") == 0  # no import
        await _shot(page, "console-viewer")
        assert page.errors == []
    async with stack.api(stack.viewer) as api:
        refused = await api.post("/keys", json={"name": "viewer-made"})
        assert refused.status_code == 403 and refused.json()["permission"] == "keys:write"
        probe = await api.post("/console/servers/test", json={"name": "x", "config": {"url": "http://127.0.0.1:9/"}})
        assert probe.status_code == 403 and probe.json()["permission"] == "servers:write"


async def test_a_key_manager_of_a_team_issues_keys_there_and_sees_only_its_keys(
    stack: Stack, chromium: Chromium
) -> None:
    async with stack.api() as api:
        assert (await api.post("/teams", json={"id": "kmteam", "name": "KM team"})).status_code == 201
    manager = await principal_token(
        stack.admin, stack.owner, "km@example.com", {"role": "key_manager", "team_id": "kmteam"}, kind="person"
    )
    async with chromium.page() as page:
        await _signed_in(page, stack, manager, view="keys")
        links = await page.evaluate("[...document.querySelectorAll('nav.main a')].map(a => a.id)")
        assert links == ["nav-keys", "nav-playground"]
        await page.wait("!!document.querySelector('#keys-table, .empty')", "the team's keys")
        assert not await page.evaluate("!!document.querySelector('#keys-table tr[data-key=admin]')")
        await page.click("#key-new")
        options = await page.evaluate("[...document.querySelectorAll('#key-owner option')].map(o => o.value)")
        assert options == ["team:kmteam"]  # where this role may issue, and nowhere else
        await page.fill("#key-name", "km-made")
        await page.fill("#grant-pattern", "echo/echo")
        await page.click("#grant-add-pattern")
        await page.click("#key-create")
        await page.shown("#key-secret-value")
        await page.shown("#keys-table tr[data-key='km-made']")
        await _shot(page, "console-key-manager")
        assert page.errors == []
    async with stack.api() as api:
        made = next(k for k in (await api.get("/keys")).json() if k["name"] == "km-made")
    assert made["team_id"] == "kmteam" and made["grants"] == ["echo/echo"]
