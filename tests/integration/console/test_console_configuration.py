"""The configuration edited in the console: servers, the export and import, the directory.

A server's connection is tested before it is saved, Add a server's help reads in lines and an
OpenAPI server is named so; the configuration exports as a file the CLI applies without a secret
and an edited one is imported; a team is edited in place and its budget saved for the period picked.
"""

from __future__ import annotations

import pytest
import yaml

from cli.apply import key_records
from libs.common.settings.config_file import parse_config
from tests.support.console_chromium import Chromium
from tests.support.console_views import Stack, _created_in_directory, _shot, _signed_in
from tests.support.gateway import ADMIN_KEY, example_server_over_http

pytestmark = pytest.mark.integration


async def test_a_server_is_tested_before_it_is_saved(stack: Stack, chromium: Chromium) -> None:
    async with example_server_over_http("--http") as url, chromium.page() as page:
        await _signed_in(page, stack)
        await page.click("#server-add")
        await page.fill("#server-name", "remote")
        await page.fill("#server-config", '{"url": "http://127.0.0.1:9/mcp"}')  # nothing listens there
        await page.click("#server-test")
        await page.shown("#server-probe.error")
        assert "Connection failed" in await page.text("#server-probe")
        await page.fill("#server-config", f'{{"url": "{url}"}}')
        await page.click("#server-test")
        await page.shown("#server-probe.notice")
        assert "echo" in await page.text("#server-probe")
        await _shot(page, "console-server-test")
        await page.click("#server-save")
        await page.wait(
            "document.querySelector(\"#servers-table tr[data-server='remote']\")?.innerText.includes('healthy')",
            "the saved server connected by the executor",
        )
        async with stack.api() as api:
            assert (await api.get("/servers/remote")).json()["config"]["url"] == url
            assert (await api.delete("/servers/remote")).status_code == 204
        assert page.errors == []


async def test_the_configuration_exports_as_a_file_the_cli_applies_without_a_secret(
    stack: Stack, chromium: Chromium, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_header = "Bearer upstream-secret-not-for-export"
    guarded = {"url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": secret_header}, "disabled": True}
    async with stack.api() as api:
        assert (await api.post("/servers", json={"name": "guarded", "config": guarded})).status_code == 201
        keys = {k["name"]: k["id"] for k in (await api.get("/keys")).json() if not k["revoked"]}
    try:
        async with chromium.page() as page:
            await _signed_in(page, stack, view="export")
            await page.click("#export-run")
            await page.shown("#export-text")
            text = str(await page.evaluate("document.querySelector('#export-text').value"))
            await page.shown("#export-download[download='bastion-config.yaml']")
            await _shot(page, "console-export")
            assert page.errors == []
    finally:
        async with stack.api() as api:
            await api.delete("/servers/guarded")
    assert "upstream-secret-not-for-export" not in text and ADMIN_KEY not in text
    assert "BASTION_SECRET_GUARDED_HEADERS_AUTHORIZATION" in text.splitlines()[2]  # the header says what to set
    monkeypatch.setenv("BASTION_SECRET_GUARDED_HEADERS_AUTHORIZATION", secret_header)
    config = parse_config(yaml.safe_load(text))  # what `bastion config apply` reads
    assert config.mcp_servers["guarded"].headers == {"Authorization": secret_header}
    assert {"echo", "notes", "many", "guarded"} <= set(config.mcp_servers)
    assert {r.name: r.id for r in key_records(config)} == keys  # the same keys, by their sha256


async def test_an_exported_file_is_edited_and_imported_in_the_browser(stack: Stack, chromium: Chromium) -> None:
    async with stack.api() as api:
        made = await api.post("/groups", json={"id": "imported", "description": "before the import", "tools": []})
        assert made.status_code == 201, made.text
    async with chromium.page() as page:
        await _signed_in(page, stack, view="export")
        await page.click("#export-run")
        await page.click("#export-edit")  # the export, handed to the import form
        await page.wait("document.querySelector('#import-text')?.value.includes('before the import')", "the draft")
        exported = str(await page.evaluate("document.querySelector('#import-text').value"))
        added = '{"id": "oncall", "description": "added by the import", "tools": ["echo/*"]},'
        section = '\n  "groups": ['  # the top-level section (a key's groups are indented deeper)
        edited = exported.replace('"before the import"', '"after the import"').replace(section, section + added, 1)
        await page.fill("#import-text", edited)
        assert await page.evaluate("document.querySelector('#import-apply').disabled")  # a plan comes first
        await page.click("#import-plan")
        await page.shown("#import-plan-result tr[data-section='groups']")
        groups = await page.text("#import-plan-result tr[data-section='groups']")
        assert "oncall" in groups and "imported" in groups  # one added, one changed
        assert await page.text("#import-plan-result tr[data-section='servers'] .changed") == "—"  # the rest as stored
        async with stack.api() as api:  # the plan wrote nothing
            assert (await api.get("/groups/oncall")).status_code == 404
        await page.click("#import-apply")
        await page.shown("#import-done")
        assert "1 added, 1 changed, nothing deleted" in await page.text("#import-done")
        await _shot(page, "console-import")
        await page.click("#nav-groups")
        await page.shown("#groups-table tr[data-group='oncall']")
        assert "after the import" in await page.text("#groups-table tr[data-group='imported']")
        assert page.errors == []
    async with stack.api() as api:
        assert (await api.get("/groups/oncall")).json()["tools"] == ["echo/*"]
        for group in ("oncall", "imported"):
            assert (await api.delete(f"/groups/{group}")).status_code == 204


async def test_a_team_is_edited_in_place_and_a_viewer_may_not(stack: Stack, chromium: Chromium) -> None:
    async with stack.api() as api:
        for customer in ("first-co", "second-co"):
            assert (await api.post("/customers", json={"id": customer, "name": customer})).status_code == 201
        made = await api.post("/teams", json={"id": "platform", "name": "Platform", "customer_id": "first-co"})
        assert made.status_code == 201, made.text
        assert (await api.post("/users", json={"id": "uma", "name": "Uma"})).status_code == 201
    row = "#directory-teams tr[data-entity='platform']"
    async with chromium.page() as page:
        await _signed_in(page, stack, view="directory")
        await page.click(f"{row} [data-edit]")
        await page.shown("#teams-edit")
        assert await page.evaluate("document.querySelector('#teams-id').readOnly")  # the id stays
        await page.fill("#teams-name", "Platform engineering")
        await page.fill("#teams-edit select", "second-co")
        await page.fill("#teams-limit", "40")
        await page.click("#teams-save")
        await page.wait(f"document.querySelector(\"{row}\")?.innerText.includes('40 USD / month')", "the edited team")
        shown = await page.text(row)
        assert "Platform engineering" in shown and "second-co" in shown
        await _shot(page, "console-people-edit")
        user = "#directory-users tr[data-entity='uma']"  # a user: its rate limit, and a team to be in
        await page.click(f"{user} [data-edit]")
        await page.fill("#users-edit select", "platform")
        await page.fill("#users-limit", "30")
        await page.click("#users-save")
        await page.wait(f"document.querySelector(\"{user}\")?.innerText.includes('30 / minute')", "the edited user")
        await page.click(f"{row} [data-edit]")  # and the budget cleared again
        await page.fill("#teams-limit", "")
        await page.click("#teams-save")
        await page.wait(f"!document.querySelector(\"{row}\")?.innerText.includes('USD')", "the budget cleared")
        assert page.errors == []
    async with stack.api() as api:
        team = (await api.get("/teams/platform")).json()
        user_after = (await api.get("/users/uma")).json()
    assert (team["name"], team["customer_id"], team["budget"]) == ("Platform engineering", "second-co", None)
    assert (user_after["team_id"], user_after["rate_limit"]) == ("platform", {"requests": 30, "per": "minute"})
    async with chromium.page() as page:
        await _signed_in(page, stack, stack.viewer, view="directory")
        await page.shown(row)
        assert await page.evaluate("document.querySelectorAll('[data-edit]').length") == 0
    async with stack.api(stack.viewer) as api:
        refused = await api.patch("/teams/platform", json={"name": "viewer-made"})
    assert refused.status_code == 403 and refused.json()["permission"] == "directory:write"


PETSTORE = "https://api.example/openapi.json"


async def test_add_a_server_reads_in_lines_and_an_openapi_server_is_named_so(stack: Stack, chromium: Chromium) -> None:
    async with stack.api() as api:
        entry = {"openapi": {"document": PETSTORE}}
        made = await api.post("/servers", json={"name": "petstore", "config": entry})
        assert made.status_code == 201, made.text
        refused = await api.post("/console/servers/test", json={"name": "x", "config": entry})
    assert refused.json()["message"].startswith("an OpenAPI server is tested by saving it")
    try:
        async with chromium.page() as page:
            await _signed_in(page, stack)
            await page.shown("#servers-table tr[data-server='petstore']")
            assert await page.text("#servers-table tr[data-server='petstore'] td[data-transport]") == "openapi"
            assert await page.text("#servers-table tr[data-server='echo'] td[data-transport]") == "stdio"
            await page.click("#server-add")
            await page.shown("#server-config-help")
            # the help is one paragraph as wide as the form, not a column of one word per line
            lines = await page.evaluate(
                "(() => { const e = document.querySelector('#server-config-help');"
                " const line = parseFloat(getComputedStyle(e).lineHeight);"
                " return Math.round(e.getBoundingClientRect().height / line); })()"
            )
            assert lines <= 2, f"the help wraps over {lines} lines"
            assert "command, args, env" in " ".join((await page.text("#server-config-help")).split())
            assert page.errors == []
    finally:
        async with stack.api() as api:
            await api.delete("/servers/petstore")


async def test_a_team_budget_is_saved_for_the_period_picked(stack: Stack, chromium: Chromium) -> None:
    async with chromium.page() as page:
        await _signed_in(page, stack, view="directory")
        fields = {"name": "Weekly", "limit": "7", "period": "week"}
        assert "7 USD / week" in await _created_in_directory(page, "teams", "weekly", fields)
        assert page.errors == []
    async with stack.api() as api:
        assert (await api.get("/teams/weekly")).json()["budget"] == {"limit_usd": 7.0, "period": "week"}
        assert (await api.delete("/teams/weekly")).status_code == 204
