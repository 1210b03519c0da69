"""The whole MCP protocol through the gateway, not just tools: prompts, resources, templates,
subscriptions, completion, logging, progress, change notifications, and an upstream asking the
agent for something mid-call (sampling, elicitation, roots). Official client, real upstreams."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import httpx2
import mcp_types as types
import orjson
import pytest
from mcp.shared.exceptions import MCPError

from tests.support.gateway import (
    ADMIN_HEADERS,
    ADMIN_KEY,
    READS_EXAMPLES,
    ROOT,
    default_config,
    gateway_on_own_servers,
    legacy_initialize,
)
from tests.support.polling import poll_until

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")]

INTERACTIVE = str(ROOT / "tests" / "support" / "interactive_server.py")
SCOPED_KEY = "bk_test_scoped_key_0000000000"


def _config() -> dict[str, Any]:
    config = default_config(
        {
            # both add definitions while running, to show list changes reach agents: served and flagged
            # (`warn`), where the default `tofu` holds additions back for a person (test_supply_chain)
            "interactive": {
                "command": sys.executable,
                "args": [INTERACTIVE],
                "sandbox": READS_EXAMPLES,
                "protocol": "legacy",
                "pinning": "warn",
            },
            "modern": {
                "command": sys.executable,
                "args": [INTERACTIVE],
                "sandbox": READS_EXAMPLES,
                "env": {"MEMO_SCHEME": "fresh"},
                "pinning": "warn",
            },
        }
    )
    config["mcpServers"]["echo"]["namespace"] = False
    config["keys"].append(
        {
            "name": "scoped",
            "key": SCOPED_KEY,
            "tools": ["interactive/greet", "interactive/prompt:greet", "interactive/resource:memo://pinned"],
        }
    )
    return config


@pytest.fixture(scope="module", params=[False, True], ids=["bus", "in-process-lane"])
async def gateway(request, tmp_path_factory):
    """Every test twice: services over nats-server, and sharing one in-process lane (co-located)."""
    workdir = tmp_path_factory.mktemp("whole")
    async with gateway_on_own_servers(
        workdir, _config(), session_secret="shared-test-secret", lane=request.param
    ) as gw:
        yield gw


class Inbox:
    """What an agent's client received outside its requests' answers (its `message_handler`)."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self._got = asyncio.Event()

    async def on_message(self, message: Any) -> None:
        self.seen.append(message)
        self._got.set()

    async def wait_for(self, kind: type) -> Any:
        async with asyncio.timeout(15):
            while not any(isinstance(m, kind) for m in self.seen):
                self._got.clear()
                await self._got.wait()
        return next(m for m in self.seen if isinstance(m, kind))


def _text(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_prompts_resources_templates_and_completion(gateway, mode):
    async with gateway.client(ADMIN_KEY, mode=mode) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        assert "interactive__greet" in prompts and prompts["interactive__greet"].arguments[0].name == "name"
        got = await client.get_prompt("interactive__greet", {"name": "Ada"})
        assert got.messages[0].content.text == "Hello, Ada!"

        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        assert "memo://pinned" in resources
        read = await client.read_resource("memo://pinned")
        assert read.contents[0].text == "pinned memo text"
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert "memo://notes/{note_id}" in templates
        assert (await client.read_resource("memo://notes/42")).contents[0].text == "note 42"

        completion = await client.complete(
            types.PromptReference(type="ref/prompt", name="interactive__greet"), {"name": "name", "value": "al"}
        )
        assert completion.completion.values == ["alice", "albert"]

        with pytest.raises(MCPError) as missing:
            await client.read_resource("memo://nowhere/at/all")
        assert missing.value.error.code == -32002
        with pytest.raises(MCPError) as unknown:
            await client.get_prompt("interactive__nope", {})
        assert unknown.value.error.code == -32602


async def test_an_unnamespaced_server_keeps_its_names(gateway):
    async with gateway.client(ADMIN_KEY, mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"echo", "add", "notes__echo", "interactive__ask_llm"} <= names and "echo__echo" not in names
        assert _text(await client.call_tool("echo", {"text": "plain"})) == "plain"


async def test_grants_cover_prompts_and_resources(gateway):
    async with gateway.client(SCOPED_KEY, mode="legacy") as client:
        assert [p.name for p in (await client.list_prompts()).prompts] == ["interactive__greet"]
        assert [str(r.uri) for r in (await client.list_resources()).resources] == ["memo://pinned"]
        assert (await client.list_resource_templates()).resource_templates == []
        assert (await client.read_resource("memo://pinned")).contents[0].text == "pinned memo text"
        with pytest.raises(MCPError) as denied:
            await client.read_resource("memo://notes/7")
        assert denied.value.error.code == -32050 and "resource 'memo://notes/7'" in denied.value.error.message
        assert (await client.list_tools()).tools == []  # `interactive/greet` names no tool


async def test_progress_and_logs_reach_the_agent_during_the_call(gateway):
    logs: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    async with gateway.client(ADMIN_KEY, mode="legacy", logging_callback=on_log) as client:
        progress: list[tuple[float, float | None, str | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, total, message))

        result = await client.call_tool("interactive__slow_progress", {"steps": 3}, progress_callback=on_progress)
        assert _text(result) == "3 steps done"
        assert progress == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]  # all before the answer

        assert _text(await client.call_tool("interactive__chatty", {})) == "logged"
        assert [entry.data for entry in logs] == ["debug line", "info line", "warning line"]
        await client.set_logging_level("warning")  # per session, applied by the gateway
        logs.clear()
        await client.call_tool("interactive__chatty", {})
        assert [entry.data for entry in logs] == ["warning line"]


async def test_the_upstream_asks_the_agent_mid_call(gateway):
    asked: list[str] = []

    async def sampling(_ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append(params.messages[0].content.text)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="forty-two"), model="test-model"
        )

    async def elicitation(_ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"answer": "blue"})

    async def roots(_ctx: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri="file:///work/project")])

    async with gateway.client(
        ADMIN_KEY,
        mode="legacy",
        sampling_callback=sampling,
        elicitation_callback=elicitation,
        list_roots_callback=roots,
    ) as client:
        assert (
            _text(await client.call_tool("interactive__ask_llm", {"prompt": "meaning of life?"}))
            == "model said: forty-two"
        )
        assert (
            _text(await client.call_tool("interactive__ask_user", {"question": "favourite colour?"})) == "accept: blue"
        )
        assert _text(await client.call_tool("interactive__my_roots", {})) == "file:///work/project"
    assert asked == ["meaning of life?", "favourite colour?"]

    async with gateway.client(ADMIN_KEY, mode="legacy") as client:  # declares no sampling: the upstream hears so
        with pytest.raises(MCPError) as refused:  # the upstream lets our refusal fail its request
            await client.call_tool("interactive__ask_llm", {"prompt": "x"})
        assert "no agent that supports sampling" in refused.value.error.message


async def test_subscriptions_and_list_changes_reach_the_standalone_stream(gateway):
    inbox = Inbox()

    async with gateway.client(ADMIN_KEY, mode="legacy", message_handler=inbox.on_message) as client:
        await client.subscribe_resource("memo://pinned")
        assert _text(await client.call_tool("interactive__touch", {"uri": "memo://pinned"})) == "notified"
        updated = await inbox.wait_for(types.ResourceUpdatedNotification)
        assert str(updated.params.uri) == "memo://pinned"

        assert _text(await client.call_tool("interactive__add_prompt", {"name": "fresh"})) == "added fresh"
        await inbox.wait_for(types.PromptListChangedNotification)
        assert "interactive__fresh" in {p.name for p in (await client.list_prompts()).prompts}

        await client.unsubscribe_resource("memo://pinned")
        assert _text(await client.call_tool("interactive__touch", {"uri": "memo://pinned"})) == "nobody subscribed"


async def test_an_agents_answer_may_reach_any_ingress_replica(gateway):
    """The agent posts its sampling answer to a second replica; the call on the first completes."""
    from libs.common.settings import IngressSettings
    from services.ingress.service import IngressService

    second = IngressService(IngressSettings(nats_url=gateway.nats_url, port=0, session_secret="shared-test-secret"))
    await second.start()
    try:
        async with httpx2.AsyncClient(timeout=30) as http:
            headers = dict(ADMIN_HEADERS)
            init = legacy_initialize(client="raw", capabilities={"sampling": {}})
            response = await http.post(gateway.url, headers=headers, json=init)
            headers["Mcp-Session-Id"] = response.headers["mcp-session-id"]
            headers["MCP-Protocol-Version"] = "2025-06-18"
            call = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "interactive__ask_llm", "arguments": {"prompt": "hi"}},
            }
            async with http.stream("POST", gateway.url, headers=headers, json=call) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                events = _sse_messages(stream)
                request = await anext(events)
                assert request["method"] == "sampling/createMessage"
                forged = {"jsonrpc": "2.0", "id": request["id"][:-2] + "xx", "result": {}}
                assert (await http.post(second.url, headers=headers, json=forged)).status_code == 202
                answer = {
                    "jsonrpc": "2.0",
                    "id": request["id"],
                    "result": {
                        "role": "assistant",
                        "content": {"type": "text", "text": "via replica two"},
                        "model": "m",
                    },
                }
                assert (await http.post(second.url, headers=headers, json=answer)).status_code == 202
                final = await anext(events)
            assert final["id"] == 2 and final["result"]["content"][0]["text"] == "model said: via replica two"
    finally:
        await second.stop()


async def _sse_messages(response: Any):
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield orjson.loads("".join(data))
            data = []


async def test_a_2026_agent_listens_for_changes_and_resource_updates(gateway):
    async with gateway.client(ADMIN_KEY, mode="auto") as client:
        assert client.protocol_version == "2026-07-28"
        async with client.listen(
            prompts_list_changed=True, resource_subscriptions=["memo://pinned", "memo://nowhere"]
        ) as sub:
            assert sub.honored.prompts_list_changed is True and sub.honored.tools_list_changed is None
            assert sub.honored.resource_subscriptions == ["memo://pinned"]  # nothing serves the other URI
            events = aiter(sub)
            assert _text(await client.call_tool("interactive__touch", {"uri": "memo://pinned"})) == "notified"
            async with asyncio.timeout(15):
                updated = await anext(events)
            assert getattr(updated, "uri", None) == "memo://pinned"
            assert _text(await client.call_tool("interactive__add_prompt", {"name": "listened"})) == "added listened"
            async with asyncio.timeout(15):
                changed = await anext(events)
            assert type(changed).__name__ == "PromptsListChanged"
    # the stream's upstream subscription ends with it
    async with gateway.client(ADMIN_KEY, mode="legacy") as client:

        async def nobody_subscribed() -> bool:
            return _text(await client.call_tool("interactive__touch", {"uri": "memo://pinned"})) == "nobody subscribed"

        await poll_until(nobody_subscribed, "the upstream subscription to end with the stream", within=15)


async def test_an_agents_cancellation_reaches_the_upstream(gateway):
    import anyio

    async with gateway.client(ADMIN_KEY, mode="legacy") as client:
        with anyio.move_on_after(1.0):  # abandoning the call makes the SDK send notifications/cancelled
            await client.call_tool("interactive__sleepy", {"label": "first", "seconds": 60})

        async def cancelled() -> bool:
            return "first" in _text(await client.call_tool("interactive__cancellations", {}))

        await poll_until(cancelled, "the upstream to see the cancellation", within=15)
        # the session keeps working, and a call that is not cancelled completes
        assert _text(await client.call_tool("interactive__sleepy", {"label": "second", "seconds": 0})) == "slept second"
        assert _text(await client.call_tool("interactive__cancellations", {})) == "first"


async def test_a_request_from_an_upstream_serving_two_agents_at_once_is_refused_not_misrouted(gateway):
    """One upstream session, two calls in flight, one sampling request each: nothing on the wire says
    which call asked, so the gateway refuses rather than show one agent the other's prompt. The upstream
    asks only once both calls are in flight, so the first request it sends is refused; the refused call
    then ends, and the other's request may come when its call is the only one left, which makes it
    unambiguous: it may then reach its own agent, never the other."""
    seen: dict[str, list[str]] = {"one": [], "two": []}

    def sampling_for(agent: str) -> Any:
        async def sampling(_ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
            seen[agent].append(params.messages[0].content.text)
            return types.CreateMessageResult(
                role="assistant", content=types.TextContent(type="text", text="x"), model="m"
            )

        return sampling

    async with (
        gateway.client(ADMIN_KEY, mode="legacy", sampling_callback=sampling_for("one")) as one,
        gateway.client(ADMIN_KEY, mode="legacy", sampling_callback=sampling_for("two")) as two,
    ):
        results = await asyncio.gather(
            one.call_tool("interactive__ask_llm_together", {"prompt": "secret of one"}),
            two.call_tool("interactive__ask_llm_together", {"prompt": "secret of two"}),
        )
    assert set(seen["one"]) <= {"secret of one"} and set(seen["two"]) <= {"secret of two"}, seen  # never misrouted
    refused = [r for r in results if "2 calls to this server are in flight" in _text(r)]
    assert refused, [_text(r) for r in results]
    assert len(refused) + len(seen["one"]) + len(seen["two"]) == 2  # each request refused or sent to its own agent


async def test_a_2026_upstream_serves_subscriptions_and_list_changes_to_a_handshake_agent(gateway):
    """The upstream speaks 2026-07-28 (no resources/subscribe, no list_changed outside a listen
    stream); the agent speaks 2025-11-25 and subscribes the old way."""
    assert gateway.ingress.catalog.server_status("modern").protocol_version == "2026-07-28"
    inbox = Inbox()

    async with gateway.client(ADMIN_KEY, mode="legacy", message_handler=inbox.on_message) as client:
        assert (await client.read_resource("fresh://pinned")).contents[0].text == "pinned memo text"
        await client.subscribe_resource("fresh://pinned")  # returns once the upstream's stream carries it
        assert _text(await client.call_tool("modern__touch", {"uri": "fresh://pinned"})) == "published"
        updated = await inbox.wait_for(types.ResourceUpdatedNotification)
        assert str(updated.params.uri) == "fresh://pinned"

        assert _text(await client.call_tool("modern__add_prompt", {"name": "newer"})) == "added newer"

        async def listed() -> bool:
            return "modern__newer" in {p.name for p in (await client.list_prompts()).prompts}

        await poll_until(listed, "the new prompt in prompts/list", within=15)


async def test_a_2026_agent_cancels_by_closing_the_stream(gateway):
    import anyio

    async with gateway.client(ADMIN_KEY, mode="auto") as client:
        assert client.protocol_version == "2026-07-28"
        with anyio.move_on_after(1.0):  # abandoning the call closes its response stream
            await client.call_tool("interactive__sleepy", {"label": "modern", "seconds": 60})

        async def cancelled() -> bool:
            return "modern" in _text(await client.call_tool("interactive__cancellations", {}))

        await poll_until(cancelled, "the upstream to see the closed stream as a cancellation", within=15)
