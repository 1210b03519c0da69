"""`/v1/messages`, the Anthropic Messages front, driven by the official `anthropic` SDK as Claude Code
drives it (`ANTHROPIC_BASE_URL` at the gateway, a Bastion key, streaming, its own tools): the request
is translated to the chat completion the OpenAI-compatible provider behind gets, and the answer comes
back in Anthropic's wire, events in Anthropic's order, with the key's MCP tools run on request or in
agent mode."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import orjson
import pytest

from libs.common.web.guarded_http import shared_tls
from tests.integration.llm.conftest import FRONT_BODY_LIMIT
from tests.support.gateway import ADMIN_KEY, Gateway
from tests.support.llm_gateway import (
    AGENT_KEY,
    BROKE_KEY,
    MODEL,
    PRICEY,
    anthropic_client,
    audit_rows_since,
    tool_names,
)
from tests.support.llm_provider import Cut, Fail, Reply

pytestmark = pytest.mark.integration

BASH = {
    "name": "Bash",
    "description": "Run a shell command",
    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
}
"""A tool of Claude Code's own: the application's, never run by Bastion."""
SYSTEM = [
    {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
    {"type": "text", "text": "Be brief."},
]


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]}


async def _events(stream: Any) -> list[Any]:
    return [event async for event in stream]


async def test_claude_code_streams_a_tool_use_and_runs_the_mcp_tool_through_bastion(began, front_gateway, provider):
    provider.script = [Reply("Let me echo. ", tool_calls=[("echo__echo", {"text": "hi"})]), Reply("It said hi.")]
    client = anthropic_client(front_gateway)
    messages: list[dict[str, Any]] = [_user("echo hi")]
    stream = await client.beta.messages.create(  # Claude Code posts /v1/messages?beta=true
        model=MODEL,
        max_tokens=32000,
        system=SYSTEM,
        messages=messages,
        tools=[{**BASH, "cache_control": {"type": "ephemeral"}}],
        stream=True,
        metadata={"user_id": "someone"},
        betas=["claude-code-20250219"],
        # what Claude Code may add, which chat completions has no word for: dropped, not refused
        extra_body={"thinking": {"type": "enabled", "budget_tokens": 1024}, "top_k": 5},
    )
    events = await _events(stream)
    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"]  # the SDK drops `ping`
    assert kinds[-2:] == ["message_delta", "message_stop"]
    starts = [event.content_block for event in events if event.type == "content_block_start"]
    assert [block.type for block in starts] == ["text", "tool_use"]
    assert kinds.count("content_block_stop") == 2
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    arguments = "".join(
        e.delta.partial_json for e in events if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    )
    assert (text, arguments) == ("Let me echo. ", '{"text":"hi"}')
    assert events[-2].delta.stop_reason == "tool_use" and events[-2].usage.output_tokens == 5

    sent = provider.received[0].body
    assert sent["messages"][0] == {"role": "system", "content": "You are Claude Code.\nBe brief."}
    assert sent["messages"][1] == {"role": "user", "content": "echo hi"}
    assert tool_names(sent)[0] == "Bash" and "echo__echo" in tool_names(sent)  # the key's MCP tools injected
    assert sent["max_tokens"] == 32000 and sent["stream"] is True
    assert not {"thinking", "top_k", "metadata", "cache_control"} & set(sent)
    assert "cache_control" not in str(sent["tools"][0])

    tool_use = {**starts[1].model_dump(), "input": orjson.loads(arguments)}  # the block as the SDK assembles it
    # run through Bastion, on the client's say-so, as docs/llm-fronts.md shows (the key as x-api-key)
    answer = await client.post("/v1/mcp/tool/execute", body=tool_use, cast_to=object)
    assert answer == {"type": "tool_result", "tool_use_id": tool_use["id"], "content": "hi"}
    assistant = [{"type": "text", "text": text}, tool_use]
    messages += [{"role": "assistant", "content": assistant}, {"role": "user", "content": [answer]}]
    async with client.messages.stream(model=MODEL, max_tokens=1024, messages=messages, tools=[BASH]) as again:
        final = await again.get_final_message()
    assert [block.type for block in final.content] == ["text"] and final.content[0].text == "It said hi."
    assert final.stop_reason == "end_turn"
    assert provider.refused == []
    continued = provider.received[1].body["messages"]
    assert continued[1]["tool_calls"][0]["id"] == tool_use["id"]
    assert continued[2] == {"role": "tool", "tool_call_id": tool_use["id"], "content": "hi"}

    rows = await audit_rows_since(front_gateway, 3, began)
    llm = sorted((r for r in rows if r.kind == "llm_request"), key=lambda r: r.ts)
    (tool,) = [r for r in rows if r.kind == "tool_call"]
    assert len(llm) == 2 and llm[0].tool_calls == ["echo__echo"] and tool.parent_id == llm[0].event_id


async def test_a_whole_message_translates_images_tool_choice_and_usage(front_gateway, provider):
    provider.script = [Reply("A red dot.", usage=(40, 7))]
    message = await anthropic_client(front_gateway, bearer=True).messages.create(  # ANTHROPIC_AUTH_TOKEN
        model=MODEL,
        max_tokens=100,
        system="Describe images.",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}},
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
        tools=[BASH],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        stop_sequences=["END"],
        extra_body={"temperature": 0.2},
    )
    assert message.type == "message" and message.role == "assistant" and message.model == MODEL
    assert [(b.type, b.text) for b in message.content if b.type == "text"] == [("text", "A red dot.")]
    assert (message.stop_reason, message.usage.input_tokens, message.usage.output_tokens) == ("end_turn", 40, 7)
    sent = provider.received[0].body
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}
    assert sent["messages"][1] == {"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}
    assert (sent["tool_choice"], sent["parallel_tool_calls"], sent["stop"]) == ("required", False, ["END"])
    assert sent["temperature"] == 0.2


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_agent_mode_runs_the_mcp_tool_and_answers_in_anthropic_turns(began, front_gateway, provider, stream):
    provider.script = [Reply("Checking. ", tool_calls=[("echo__echo", {"text": "x"})]), Reply("Done.")]
    client = anthropic_client(front_gateway, AGENT_KEY)
    request: dict[str, Any] = {"model": MODEL, "max_tokens": 1024, "messages": [_user("go")], "tools": [BASH]}
    if stream:
        async with client.messages.stream(**request) as events:
            final = await events.get_final_message()
        text = "".join(b.text for b in final.content if b.type == "text")
        assert text == "Checking. Done."  # every round's text, streamed as it came
    else:
        final = await client.messages.create(**request)
        assert [b.text for b in final.content if b.type == "text"] == ["Done."]
        summary = final.model_extra["bastion"]
        assistant, result = summary["transcript"]
        assert [b["type"] for b in assistant["content"]] == ["text", "tool_use"]
        assert result["role"] == "user" and result["content"][0]["type"] == "tool_result"
        assert result["content"][0]["content"] == "x"
    assert final.stop_reason == "end_turn" and not [b for b in final.content if b.type == "tool_use"]
    assert provider.received[1].body["messages"][-1]["content"] == "x"  # the model saw the tool's result
    rows = await audit_rows_since(front_gateway, 3, began)
    assert sorted(r.kind for r in rows) == ["llm_request", "llm_request", "tool_call"]


async def test_agent_mode_hands_back_the_application_tool_as_a_pending_tool_use(front_gateway, provider):
    provider.script = [Reply(tool_calls=[("echo__echo", {"text": "ran"}), ("Bash", {"command": "ls"})])]
    async with anthropic_client(front_gateway, AGENT_KEY).messages.stream(
        model=MODEL, max_tokens=1024, messages=[_user("both")], tools=[BASH]
    ) as events:
        final = await events.get_final_message()
    (pending,) = final.content
    assert (pending.type, pending.name, pending.input) == ("tool_use", "Bash", {"command": "ls"})
    assert final.stop_reason == "tool_use"


async def test_errors_come_in_anthropic_shape_with_anthropic_statuses(front_gateway, provider):
    with pytest.raises(anthropic.AuthenticationError) as refused:
        await anthropic_client(front_gateway, "bk_not_a_key_at_all_000000000").messages.create(
            model=MODEL, max_tokens=10, messages=[_user("hi")]
        )
    assert refused.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": refused.value.body["error"]["message"]},
    }
    client = anthropic_client(front_gateway)
    with pytest.raises(anthropic.NotFoundError) as unknown:
        await client.messages.create(model="claude-nowhere", max_tokens=10, messages=[_user("hi")])
    assert unknown.value.body["error"]["type"] == "not_found_error" and MODEL in unknown.value.body["error"]["message"]
    with pytest.raises(anthropic.APIStatusError) as broke:  # policy refuses before any provider is called
        await anthropic_client(front_gateway, BROKE_KEY).messages.create(
            model=PRICEY, max_tokens=100, messages=[_user("hi")]
        )
    assert broke.value.status_code == 402 and broke.value.body["error"]["type"] == "billing_error"
    assert provider.received == []
    provider.script = [Fail(500, "the provider is having a bad day")]
    with pytest.raises(anthropic.APIStatusError) as failed:
        await client.messages.create(model=MODEL, max_tokens=10, messages=[_user("hi")])
    assert failed.value.status_code == 502 and failed.value.body["type"] == "error"


async def test_a_stream_cut_midway_ends_in_an_error_event_the_sdk_raises(began, front_gateway, provider):
    provider.script = [Cut("Half an answer that never")]
    text = []
    with pytest.raises(anthropic.APIError):
        async with anthropic_client(front_gateway).messages.stream(
            model=MODEL, max_tokens=100, messages=[_user("hi")]
        ) as events:
            async for event in events:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    text.append(event.delta.text)
    assert "".join(text) == "Half an answer that never"  # what came, then the error, never a whole message
    (row,) = await audit_rows_since(front_gateway, 1, began)
    assert (row.kind, row.status) == ("llm_request", "error")


async def test_count_tokens_answers_an_estimate(front_gateway):
    client = anthropic_client(front_gateway)
    short = await client.messages.count_tokens(model=MODEL, messages=[_user("hi")])
    long = await client.messages.count_tokens(
        model=MODEL, messages=[_user("hi " * 400)], system="Be brief.", tools=[BASH]
    )
    assert 0 < short.input_tokens < long.input_tokens


async def _post(gateway: Gateway, body: bytes | dict[str, Any]) -> httpx.Response:
    base = gateway.url.removesuffix("/mcp")
    headers = {"x-api-key": ADMIN_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    async with httpx.AsyncClient(timeout=30, verify=shared_tls()) as http:
        return await http.post(f"{base}/v1/messages", content=content, headers=headers)


async def test_the_stream_sends_anthropics_events_in_anthropics_order(front_gateway, provider):
    """Read off the wire (the SDK hides `ping`), with an `event:` line naming each one as Anthropic's do."""
    provider.script = [Reply("Hello there", tool_calls=[("echo__echo", {"text": "a"}), ("Bash", {"command": "ls"})])]
    answer = await _post(front_gateway, {**_VALID, "stream": True, "tools": [BASH]})
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = [block.split("\n") for block in answer.text.strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    payloads = [orjson.loads(lines[1].removeprefix("data: ")) for lines in events]
    assert [p["type"] for p in payloads] == names
    start, delta, stop = "content_block_start", "content_block_delta", "content_block_stop"
    text = [start, "ping", delta, delta, delta, stop]  # "Hello there" in pieces of four characters
    call = [start, delta, delta, stop]  # a tool_use: its arguments in two pieces
    assert names == ["message_start", *text, *call, *call, "message_delta", "message_stop"]
    assert [p["index"] for p in payloads if p["type"] == start] == [0, 1, 2]
    assert payloads[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert payloads[-2]["usage"]["output_tokens"] == 5


_VALID = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
ATTACKS: dict[str, tuple[Any, str]] = {
    "not json": (b"{not json", "not valid JSON"),
    "an array body": (b"[1, 2]", "JSON object"),
    "no max_tokens": ({**_VALID, "max_tokens": None}, "max_tokens"),
    "max_tokens a string": ({**_VALID, "max_tokens": "10"}, "max_tokens"),
    "messages an object": ({**_VALID, "messages": {"role": "user"}}, "messages"),
    "a system role": ({**_VALID, "messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
    "content a number": ({**_VALID, "messages": [{"role": "user", "content": 7}]}, "messages.0.content"),
    "an unknown block": ({**_VALID, "messages": [{"role": "user", "content": [{"type": "video"}]}]}, "video"),
    "a text block without text": ({**_VALID, "messages": [{"role": "user", "content": [{"type": "text"}]}]}, "text"),
    "a tool_use without id": (
        {**_VALID, "messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "x", "input": {}}]}]},
        "tool_use",
    ),
    "a tool_result without id": (
        {**_VALID, "messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]},
        "tool_use_id",
    ),
    "an image from nowhere": (
        {**_VALID, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}]},
        "source",
    ),
    "a server tool": ({**_VALID, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "server tools"),
    "a tool without schema": ({**_VALID, "tools": [{"name": "x"}]}, "input_schema"),
    "a bad tool_choice": ({**_VALID, "tool_choice": "any"}, "tool_choice"),
    "system a number": ({**_VALID, "system": 3}, "system"),
    "model a number": ({**_VALID, "model": 3}, "model"),
}


async def test_malformed_requests_get_a_clear_anthropic_error_and_no_provider_call(began, front_gateway, provider):
    for name, (body, says) in ATTACKS.items():
        answer = await _post(front_gateway, body)
        error = answer.json()
        assert answer.status_code == 400, name
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error", name
        assert says in error["error"]["message"], (name, error)
    oversized = await _post(front_gateway, {**_VALID, "system": "x" * FRONT_BODY_LIMIT})
    assert oversized.status_code == 413 and oversized.json()["error"]["type"] == "request_too_large"
    assert provider.received == []
    provider.script = [Reply("still here")]
    assert (await _post(front_gateway, _VALID)).json()["content"][0]["text"] == "still here"
    rows = await audit_rows_since(front_gateway, 1, began)
    assert [r.kind for r in rows] == ["llm_request"]  # the refused ones reached no provider
