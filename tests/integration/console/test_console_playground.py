"""The console's playground: calls, a Code Mode script, a replay and chat completions, as a key.

A Code Mode script runs as a key; a call from live traffic is replayed as a new audited call; a chat
completion goes to a scripted model, whose tool call the gateway runs in agent mode or shows, not
run, to an explicit key until the person runs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.console_browser import Page
from tests.support.console_chromium import Chromium
from tests.support.console_views import Stack, _event_with_arguments, _laptop_check, _shot, _signed_in
from tests.support.gateway import ADMIN_KEY
from tests.support.llm_provider import Received, Reply, ScriptedProvider, scripted_provider

pytestmark = pytest.mark.integration


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
