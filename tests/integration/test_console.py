"""The web console in a real browser (Debian's Chromium over the DevTools Protocol) against a real
running stack: every service from its composition root, real upstream MCP servers (one with 1,200
tools), the admin service with the console, the gateway's `/mcp` behind the playground.

A person signs in, sees every view, issues a key, calls a tool with it (through an agent's client
and through the playground), and finds the calls in live traffic with their audit rows; adds a
server after testing its connection; revokes keys in bulk. Screenshots of each view are saved as
test artifacts under `.artifacts/console/` (docs/console.md names them).
"""

from __future__ import annotations

import contextlib
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cli.apply import key_records
from libs.common.settings import CodeModeSettings
from libs.common.settings.config_file import parse_config
from services.admin.service import AdminService
from tests.support.admin_api import principal_token
from tests.support.console_browser import CONSOLE_ARTIFACTS, Page, open_console
from tests.support.console_chromium import Chromium, module_chromium
from tests.support.console_stack import console_stack
from tests.support.gateway import ADMIN_KEY, READS_EXAMPLES, Gateway, default_config, example_server_over_http
from tests.support.llm_provider import Received, Reply, ScriptedProvider, scripted_provider
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MANY = ROOT / "tests" / "support" / "many_tools_server.py"
PETSTORE = "https://api.example/openapi.json"
_TLS = ssl.create_default_context()
"""One for every client of the admin API: each new one would read the CA bundle again (tens of ms of CPU)."""


@dataclass
class Stack:
    gateway: Gateway
    admin: AdminService
    owner: str
    """API tokens of an owner, an analyst, an auditor and a viewer (docs/admin-api.md)."""
    analyst: str
    auditor: str
    viewer: str

    @property
    def console(self) -> str:
        return f"{self.admin.url}/console"

    def api(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token or self.owner}"}
        return httpx.AsyncClient(base_url=f"{self.admin.url}/admin/v1", headers=headers, timeout=60, verify=_TLS)


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("console")
    config = default_config({"many": {"command": sys.executable, "args": [str(MANY)], "sandbox": READS_EXAMPLES}})
    # no test here searches tools: embedding the 1,200 tools of `many` would be CPU for nothing
    codemode = CodeModeSettings(sandbox_workers=1, search_embeddings=False)
    # nor changes a definition unannounced: re-listing 1,200 tools every 2 s to catch one would be too
    drift = {"drift_interval": 0}
    async with console_stack(tmp, config, codemode=codemode, executor_options=drift) as (gateway, admin, owner):
        roles = {
            role: await principal_token(admin, owner, f"{role}@example.com", {"role": role}, kind="person")
            for role in ("analyst", "auditor", "viewer")
        }
        yield Stack(gateway, admin, owner, **roles)


chromium = module_chromium  # one browser for the module, a tab per test


async def _signed_in(page: Page, stack: Stack, token: str | None = None, view: str = "servers") -> None:
    await open_console(page, stack.console, token or stack.owner, view)


async def _created_in_directory(page: Page, kind: str, entity: str, fields: dict[str, str]) -> str:
    """A customer or team (`kind`) made with the directory's form, `fields` filled (`#<kind>-<field>`):
    the text of its new row."""
    await page.click(f"#{kind}-new")
    await page.fill(f"#{kind}-id", entity)
    for field, value in fields.items():
        await page.fill(f"#{kind}-{field}", value)
    await page.click(f"#{kind}-save")
    row = f"#directory-{kind} tr[data-entity='{entity}']"
    await page.shown(row)
    return await page.text(row)


async def _shot(page: Page, name: str) -> None:
    await page.screenshot(CONSOLE_ARTIFACTS / f"{name}.png")


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


async def test_the_playground_runs_a_code_mode_script_as_a_key(stack: Stack, chromium: Chromium) -> None:
    async with stack.api() as api:
        made = await api.post("/keys", json={"name": "scripted", "grants": ["echo/*"], "code_mode": True})
    assert made.status_code == 201, made.text
    async with chromium.page() as page:
        await _signed_in(page, stack, view="playground")
        await page.shown(f"#play-key option[value='{made.json()['key']['id']}']")
        await page.fill("#play-key", made.json()["key"]["id"])
        await page.fill("#play-secret", made.json()["secret"])
        await page.click("#play-list")
        await page.shown("#play-tool option[value='execute_code']")
        await page.fill("#play-tool", "execute_code")
        await page.fill("textarea#arg-code", 'print(echo.echo(text="from a script"))')
        await page.click("#play-call")
        await page.shown("#play-result")
        assert "from a script" in await page.text("#play-result")
        await page.shown("#play-audit")
        assert "execute_code" in await page.text("#play-audit")
        await page.wait(
            "document.querySelector('#event-detail')?.innerText.includes('Calls made inside it')", "the run's calls"
        )
        assert "echo__echo" in await page.text("#event-detail")  # the tool call the script made, inside the run
        await _shot(page, "console-playground-code-mode")
        assert page.errors == []


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


async def _event_with_arguments(stack: Stack, text: str) -> str:
    """The id of the audit event whose arguments hold `text`, once it has reached ClickHouse."""
    sql = "SELECT event_id FROM bastion.audit_events FINAL WHERE position(arguments, {text:String}) > 0 LIMIT 1"

    async def landed() -> str | None:
        async with stack.api(stack.auditor) as api:
            answer = await api.post("/analytics/query", json={"sql": sql, "parameters": {"text": text}})
        if answer.status_code == 503:  # "retry shortly": a NATS request of the admin API timed out under load
            return None
        assert answer.status_code == 200, answer.text
        rows = answer.json()["rows"]
        return str(rows[0][0]) if rows else None

    return await poll_until(landed, f"the event of the call with {text!r}", 60, every=0.5)


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


async def test_a_call_from_live_traffic_is_replayed_in_the_playground(stack: Stack, chromium: Chromium) -> None:
    async with stack.gateway.client() as client:
        assert not (await client.call_tool("echo__echo", {"text": "replay-me"})).is_error
    event_id = await _event_with_arguments(stack, "replay-me")
    async with chromium.page() as page:
        await _signed_in(page, stack, view="traffic")
        await page.fill("#filter-key", "admin")
        await page.click(f"#traffic-table tr[data-event='{event_id}']")
        await page.click("#event-replay")
        await page.wait("document.body.dataset.view === 'playground'", "the playground")
        assert "echo__echo" in await page.text("#play-replay")
        await page.wait(  # the call's key, chosen once the view has the keys
            "document.querySelector('#play-key').value !== ''", "the replayed call's key chosen"
        )
        assert "replay-me" not in await page.evaluate("location.href")  # arguments never enter the address
        await page.fill("#play-secret", ADMIN_KEY)  # not issued in this tab: the person pastes it
        await page.click("#play-list")
        await page.wait("document.querySelector('#play-tool')?.value === 'echo__echo'", "the tool chosen")
        assert await page.evaluate("document.querySelector('#arg-text').value") == "replay-me"
        await _shot(page, "console-replay")
        await page.click("#play-call")
        await page.shown("#play-result")
        assert "replay-me" in await page.text("#play-result")
        await page.shown("#play-audit")  # the replay is a real call with its own audit row
        assert await page.evaluate("document.querySelector('#play-audit').dataset.event") != event_id
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


async def test_the_playground_sends_a_chat_completion_as_a_key(stack: Stack, chromium: Chromium) -> None:
    async with scripted_provider() as provider, stack.api() as api:
        provider.script.append(Reply(text="hello from the scripted model"))
        config = {"base_url": provider.base_url, "models": ["console-model"]}
        assert (await api.post("/llm-providers", json={"name": "scripted", "config": config})).status_code == 201
        made = (await api.post("/keys", json={"name": "chatty", "grants": []})).json()
        try:
            async with chromium.page() as page:
                await _signed_in(page, stack, view="playground")
                await page.shown(f"#play-key option[value='{made['key']['id']}']")
                await page.fill("#play-key", made["key"]["id"])
                await page.fill("#play-secret", made["secret"])
                await page.fill("#play-mode", "chat")
                await page.shown("#play-models option[value='console-model']")  # offered from the providers
                await page.fill("#play-model", "console-model")
                await page.fill("#play-message", "say hello")
                await page.click("#play-send")
                await page.shown("#play-chat-answer")
                assert await page.text("#play-chat-answer") == "hello from the scripted model"
                await page.shown("#play-audit")
                audit = await page.text("#play-audit")
                assert "llm_request" in audit and "chatty" in audit and "console-model" in audit
                await _shot(page, "console-playground-chat")
                assert page.errors == []
        finally:
            await api.delete("/llm-providers/scripted")
    assert provider.received and provider.received[0].body["messages"] == [{"role": "user", "content": "say hello"}]


async def _chat_as(page: Page, stack: Stack, made: dict[str, Any], message: str, offer: str) -> None:
    """Pick the key, its secret, the scripted model and one of the key's tools, and send `message`."""
    await _signed_in(page, stack, view="playground")
    await page.shown(f"#play-key option[value='{made['key']['id']}']")
    await page.fill("#play-key", made["key"]["id"])
    await page.fill("#play-secret", made["secret"])
    await page.fill("#play-mode", "chat")
    await page.fill("#play-model", "console-model")
    await page.fill("#play-message", message)
    await page.click("#play-list")
    await page.shown(f"#play-offer input[data-tool='{offer}']")
    await page.click(f"#play-offer input[data-tool='{offer}']")
    await page.wait(f"document.querySelector(\"#play-offer input[data-tool='{offer}']\").checked", "the tool offered")
    await page.click("#play-send")


@contextlib.asynccontextmanager
async def _scripted_model(stack: Stack) -> AsyncIterator[ScriptedProvider]:
    async with scripted_provider() as provider, stack.api() as api:
        config = {"base_url": provider.base_url, "models": ["console-model"]}
        assert (await api.post("/llm-providers", json={"name": "scripted", "config": config})).status_code == 201
        try:
            yield provider
        finally:
            await api.delete("/llm-providers/scripted")


def _offered(received: Received) -> list[str]:
    return [t["function"]["name"] for t in received.body.get("tools", [])]


async def test_the_playground_chat_offers_a_tool_the_gateway_runs_in_agent_mode(
    stack: Stack, chromium: Chromium
) -> None:
    async with _scripted_model(stack) as provider, stack.api() as api:
        provider.script += [
            Reply(tool_calls=[("echo__echo", {"text": "from the model"})]),
            Reply(text="the echo said: from the model"),
        ]
        agent = {"tools_to_auto_execute": ["echo__*"], "max_depth": 3}
        made = (await api.post("/keys", json={"name": "agentic", "grants": ["echo/*"], "agent": agent})).json()
        async with chromium.page(width=1366, height=768) as page:  # a laptop's screen
            await _chat_as(page, stack, made, "echo something", "echo__echo")
            assert await page.evaluate("document.querySelector('#play-agent').dataset.mode") == "agent"
            await page.shown("#play-ran li[data-call='echo__echo']")
            ran = await page.text("#play-ran li[data-call='echo__echo']")
            assert '"text": "from the model"' in ran  # the arguments the model wrote
            assert await page.text("#play-ran .call-result") == "from the model"  # what the tool answered
            assert await page.text("#play-chat-answer") == "the echo said: from the model"
            assert not await page.evaluate("!!document.querySelector('#play-proposed')")  # nothing left to the caller
            # the audit trail: a row per model round, and the tool call under the round that proposed it
            await page.shown("#play-audit-rows tr[data-kind='tool_call'][data-name='echo__echo']")
            await page.wait(
                "document.querySelectorAll(\"#play-audit-rows tr[data-kind='llm_request']\").length === 2",
                "both rounds",
            )
            first = await page.evaluate(
                "document.querySelector(\"#play-audit-rows tr[data-kind='llm_request']\").dataset.event"
            )
            call = await page.evaluate(
                "document.querySelector(\"#play-audit-rows tr[data-kind='tool_call']\").dataset.parent"
            )
            assert call == first
            assert "ok" in await page.text("#play-audit-rows tr[data-kind='tool_call']")
            await page.wait(  # the first round's detail lists the call it led to
                "document.querySelector('#play-audit #event-detail')?.innerText.includes('Calls made inside it')",
                "the round's tool call",
            )
            await _laptop_check(page, "a chat's tool calls and audit rows")
            await _shot(page, "console-playground-chat-tools")
            assert page.errors == []
    assert provider.refused == []
    assert _offered(provider.received[0]) == ["echo__echo"]  # only the tool picked, not every tool of the key
    tool_message = provider.received[1].body["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["content"] == "from the model"


async def test_the_playground_chat_shows_the_calls_a_model_proposes_to_an_explicit_key(
    stack: Stack, chromium: Chromium
) -> None:
    async with _scripted_model(stack) as provider, stack.api() as api:
        provider.script.append(Reply(text="I would echo", tool_calls=[("echo__echo", {"text": "when asked"})]))
        made = (await api.post("/keys", json={"name": "explicit", "grants": ["echo/*"]})).json()
        async with chromium.page() as page:
            await _chat_as(page, stack, made, "echo something", "echo__echo")
            assert await page.evaluate("document.querySelector('#play-agent').dataset.mode") == "explicit"
            await page.shown("#play-proposed li[data-call='echo__echo']")
            assert '"text": "when asked"' in await page.text("#play-proposed")
            assert not await page.evaluate("!!document.querySelector('#play-ran, #play-proposed .call-result')")
            assert await page.text("#play-chat-answer") == "I would echo"
            await page.shown("#play-audit-rows tr[data-kind='llm_request']")
            assert not await page.evaluate("!!document.querySelector(\"#play-audit-rows tr[data-kind='tool_call']\")")
            # the person runs it, as the application would: as the key, audited under the round that proposed it
            await page.click("#play-execute")
            await page.shown("#play-proposed .call-result")
            assert await page.text("#play-proposed .call-result") == "when asked"
            await page.shown("#play-audit-rows tr[data-kind='tool_call'][data-name='echo__echo']")
            round_id = await page.evaluate(
                "document.querySelector(\"#play-audit-rows tr[data-kind='llm_request']\").dataset.event"
            )
            parent = await page.evaluate(
                "document.querySelector(\"#play-audit-rows tr[data-kind='tool_call']\").dataset.parent"
            )
            assert parent == round_id
            await _shot(page, "console-playground-chat-explicit")
            assert page.errors == []
        unknown = {"secret": made["secret"], "model": "console-model", "message": "hi", "tools": ["nowhere__nothing"]}
        refused = await api.post("/console/playground/chat", json=unknown)  # offered only what a server has
        assert refused.status_code == 422 and refused.json()["error"] == "unknown_tool", refused.text
        assert made["secret"] not in refused.text
    assert len(provider.received) == 1 and _offered(provider.received[0]) == ["echo__echo"]


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
# Something a click works but the keyboard cannot reach: a clickable row without a tab stop, or a
# control taken out of the tab order.
_UNREACHABLE = (
    ".clickable:not([tabindex]), a[tabindex='-1'], button[tabindex='-1'], input[tabindex='-1'],"
    " select[tabindex='-1'], textarea[tabindex='-1'], tr[tabindex='-1']"
)
_WIDE = (
    "[...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right > innerWidth + 1)"
    ".slice(0, 3).map(e => e.tagName + (e.id ? '#' + e.id : '') + ' ' + e.className)"
)


async def _laptop_check(page: Page, where: str) -> None:
    """Nothing in the view is out of the keyboard's reach, and nothing makes the page scroll sideways."""
    assert await page.evaluate(f"document.querySelectorAll({_UNREACHABLE!r}).length") == 0, where
    width = await page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert width[0] <= width[1], f"{where} scrolls sideways ({width}); too wide: {await page.evaluate(_WIDE)}"


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


# ------------------------------------------------------------------ what a new user trips on


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


async def test_a_team_budget_is_saved_for_the_period_picked(stack: Stack, chromium: Chromium) -> None:
    async with chromium.page() as page:
        await _signed_in(page, stack, view="directory")
        fields = {"name": "Weekly", "limit": "7", "period": "week"}
        assert "7 USD / week" in await _created_in_directory(page, "teams", "weekly", fields)
        assert page.errors == []
    async with stack.api() as api:
        assert (await api.get("/teams/weekly")).json()["budget"] == {"limit_usd": 7.0, "period": "week"}
        assert (await api.delete("/teams/weekly")).status_code == 204
