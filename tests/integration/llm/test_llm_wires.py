"""Every provider wire behind `/v1/chat/completions`: the official `openai` SDK -> Bastion -> a fake
provider speaking OpenAI's, Azure's, Anthropic's, Gemini's, Vertex AI's or Bedrock's own wire
(tests/support/provider_wires, held to each provider's SDK by test_provider_fakes.py). The same
conversations on each: a tool call round trip with the key's MCP tools (explicit and agent mode),
a streamed answer with text and a tool call, usage with cached tokens, and the provider's errors and
overloads as clear errors that never carry the provider's key."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import openai
import orjson
import pytest

from tests.support.gateway import ADMIN_KEY, Gateway
from tests.support.llm_gateway import (
    AGENT_KEY,
    PROVIDER_KEY,
    accumulated,
    anthropic_client,
    audit_rows_since,
    llm_config,
    sdk_client,
)
from tests.support.llm_provider import Broken, Fail, Overload, Raw, Reply, ScriptedProvider
from tests.support.provider_wires import WIRES
from tests.support.provider_wires.bedrock import SECRET_KEY
from tests.support.wire_fakes import started_fakes, wires_gateway

pytestmark = pytest.mark.integration

CROSS = "m-cross-wire"
"""A routed model whose deployments speak different wires."""

RETRY_AFTER_SENT = {"openai", "azure", "anthropic", "gemini"}
"""The wires whose rate limit answer says when to retry (Bedrock's does not)."""


@pytest.fixture(scope="module")
async def fakes() -> AsyncIterator[dict[str, ScriptedProvider]]:
    async with started_fakes(WIRES) as started:
        yield started


@pytest.fixture(scope="module")
async def shared_gateway(
    tmp_path_factory: pytest.TempPathFactory, fakes: dict[str, ScriptedProvider]
) -> AsyncIterator[Gateway]:
    workdir = tmp_path_factory.mktemp("wires")
    config = llm_config(fakes["openai"])
    # a routed model over two wires: Anthropic's first, Gemini's when it fails (docs/llm-routing.md)
    cross = [
        {"provider": "anthropic", "model": "m-anthropic"},
        {"provider": "gemini", "model": "m-gemini", "priority": 1},
    ]
    config["llm"] = {"models": {CROSS: {"deployments": cross}}}
    async with wires_gateway(workdir, config, fakes) as gw:
        yield gw


@pytest.fixture(params=WIRES)
def fake(request: pytest.FixtureRequest, fakes: dict[str, ScriptedProvider]) -> ScriptedProvider:
    provider = fakes[request.param]
    provider.reset()
    return provider


async def test_a_tool_call_round_trip(began, gateway, fake):
    model = f"m-{fake.wire}"
    fake.script = [
        Reply(tool_calls=[("echo__echo", {"text": "hello"})], usage=(100, 20), cached=40),
        Reply(text="It said hello.", usage=(130, 6)),
    ]
    ask = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "say hello"}]
    first = await sdk_client(gateway).chat.completions.create(model=model, messages=ask)
    (call,) = first.choices[0].message.tool_calls
    assert (call.function.name, orjson.loads(call.function.arguments)) == ("echo__echo", {"text": "hello"})
    assert first.choices[0].finish_reason == "tool_calls"
    usage = first.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens_details.cached_tokens) == (100, 20, 40)
    # the provider was offered the key's MCP tools in its own wire
    assert {"echo__echo", "echo__add"} <= set(fake.speaker.tool_names(fake.received[0].body))

    result = await sdk_client(gateway).post("/mcp/tool/execute", body=call.model_dump(), cast_to=object)
    assert result == {"role": "tool", "tool_call_id": call.id, "content": "hello"}
    conversation = [*ask, first.choices[0].message.model_dump(exclude_none=True), result]
    second = await sdk_client(gateway).chat.completions.create(model=model, messages=conversation)
    assert (second.choices[0].message.content, second.choices[0].finish_reason) == ("It said hello.", "stop")
    assert fake.speaker.tool_results(fake.received[1].body) == ["hello"]
    assert fake.refused == []  # each request was one the provider accepts
    rows = await audit_rows_since(gateway, 3, began)
    llm = sorted((r for r in rows if r.kind == "llm_request"), key=lambda r: r.ts)
    assert [(r.server, r.prompt_tokens, r.completion_tokens) for r in llm] == [
        (fake.wire, 100, 20),
        (fake.wire, 130, 6),
    ]


async def test_agent_mode_runs_the_tool_and_feeds_its_result_back(gateway, fake):
    fake.script = [Reply(tool_calls=[("echo__echo", {"text": "hi"})]), Reply(text="The echo said hi.")]
    done = await sdk_client(gateway, AGENT_KEY).chat.completions.create(
        model=f"m-{fake.wire}", messages=[{"role": "user", "content": "echo hi"}]
    )
    assert done.choices[0].message.content == "The echo said hi."
    assert done.model_extra["bastion"]["depth"] == 2
    assert fake.speaker.tool_results(fake.received[1].body) == ["hi"] and fake.refused == []


async def test_a_streamed_answer_with_text_and_a_tool_call(began, gateway, fake):
    fake.script = [Reply(text="Let me add.", tool_calls=[("echo__add", {"a": 2, "b": 40})], usage=(7, 9), cached=3)]
    stream = await sdk_client(gateway).chat.completions.create(
        model=f"m-{fake.wire}",
        messages=[{"role": "user", "content": "add"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks, message, _ = await accumulated(stream)
    assert message.content == "Let me add."
    (call,) = message.tool_calls
    assert (call.function.name, orjson.loads(call.function.arguments)) == ("echo__add", {"a": 2, "b": 40})
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens_details.cached_tokens) == (7, 9, 3)
    (row,) = [r for r in await audit_rows_since(gateway, 1, began) if r.kind == "llm_request"]
    assert (row.status, row.prompt_tokens, row.completion_tokens, row.tool_calls) == ("ok", 7, 9, ["echo__add"])


async def test_errors_and_overloads_are_clear_and_never_carry_the_key(began, gateway, fake, caplog):
    caplog.set_level(logging.DEBUG)
    model, ask = f"m-{fake.wire}", [{"role": "user", "content": "hi"}]
    # a provider may quote the key it was sent (Bedrock's requests carry a signature, not the secret)
    quoted = "" if fake.wire == "bedrock" else PROVIDER_KEY
    fake.script = [Fail(429, f"slow down, {quoted}", retry_after=7), Overload(), Broken("Hel")]
    with pytest.raises(openai.RateLimitError) as limited:
        await sdk_client(gateway).chat.completions.create(model=model, messages=ask)
    assert "HTTP 429" in limited.value.message and PROVIDER_KEY not in limited.value.message
    if fake.wire in RETRY_AFTER_SENT:
        assert limited.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.APIStatusError) as overloaded:
        await sdk_client(gateway).chat.completions.create(model=model, messages=ask)
    assert overloaded.value.status_code == 502 and overloaded.value.body["code"] == "upstream_unavailable"
    stream = await sdk_client(gateway).chat.completions.create(model=model, messages=ask, stream=True)
    text = []
    with pytest.raises(openai.APIError) as broken:
        async for chunk in stream:
            text += [choice.delta.content or "" for choice in chunk.choices]
    assert "".join(text) == "Hel" and "mid-stream" in broken.value.message
    rows = await audit_rows_since(gateway, 3, began)
    # an error event of OpenAI's wire says nothing of an overload; the others' do
    broken_kind = "upstream_error" if fake.wire in ("openai", "azure") else "upstream_unavailable"
    in_order = sorted(rows, key=lambda r: r.ts)
    assert [r.error_kind for r in in_order] == ["rate_limited", "upstream_unavailable", broken_kind]
    assert all(PROVIDER_KEY not in row.model_dump_json() and SECRET_KEY not in row.model_dump_json() for row in rows)
    assert PROVIDER_KEY not in caplog.text and SECRET_KEY not in caplog.text
    assert ADMIN_KEY not in str(fake.received[0].headers)  # the agent's key stays at the gateway


async def test_an_answer_not_of_the_wires_shape_is_a_clear_error(gateway, fake):
    fake.script = [Raw(200, {"unexpected": "shape"})]
    with pytest.raises(openai.APIStatusError) as odd:
        await sdk_client(gateway).chat.completions.create(
            model=f"m-{fake.wire}", messages=[{"role": "user", "content": "hi"}]
        )
    assert odd.value.status_code == 502 and "answered unexpectedly" in odd.value.message


PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


async def test_an_image_reaches_the_provider_in_its_wire(gateway, fake):
    fake.script = [Reply(text="A single pixel.")]
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
    ]
    done = await sdk_client(gateway).chat.completions.create(
        model=f"m-{fake.wire}", messages=[{"role": "user", "content": content}]
    )
    assert done.choices[0].message.content == "A single pixel."
    # in the provider's own image block, which its SDK's schema accepted
    assert PIXEL in orjson.dumps(fake.received[0].body).decode() and fake.refused == []


async def test_a_routed_model_fails_over_from_one_wire_to_another(began, gateway, fakes):
    anthropic, gemini = fakes["anthropic"], fakes["gemini"]
    anthropic.reset()
    gemini.reset()
    anthropic.script, gemini.script = [Overload()], [Reply("from gemini")]
    completion = await sdk_client(gateway).chat.completions.create(
        model=CROSS, messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "from gemini"
    assert (len(anthropic.received), len(gemini.received)) == (1, 1)
    (row,) = [r for r in await audit_rows_since(gateway, 1, began) if r.tool == CROSS]
    assert (row.status, row.server) == ("ok", "gemini")
    assert [line.split(" in ")[0] for line in row.llm_attempts] == [
        "anthropic/m-anthropic (m-cross-wire): upstream_unavailable",
        "gemini/m-gemini (m-cross-wire): ok",
    ]


async def test_the_anthropic_sdk_streams_a_tool_use_through_messages_to_each_wire(gateway, fake):
    """Claude Code's way in (`/v1/messages`, streamed, the key as `x-api-key`) to every provider wire:
    the tool use the provider proposes arrives as Anthropic's blocks, the MCP tool runs through
    Bastion, and its result reaches the provider in the provider's own wire."""
    fake.script = [Reply("Echoing. ", tool_calls=[("echo__echo", {"text": "hi"})]), Reply("It said hi.")]
    client = anthropic_client(gateway)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "echo hi"}]
    async with client.messages.stream(model=f"m-{fake.wire}", max_tokens=256, messages=messages) as stream:
        first = await stream.get_final_message()
    assert [block.type for block in first.content] == ["text", "tool_use"] and first.stop_reason == "tool_use"
    tool_use = first.content[1].model_dump()
    assert (tool_use["name"], tool_use["input"]) == ("echo__echo", {"text": "hi"})
    answer = await client.post("/v1/mcp/tool/execute", body=tool_use, cast_to=object)
    assert answer == {"type": "tool_result", "tool_use_id": tool_use["id"], "content": "hi"}
    messages += [
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {"role": "user", "content": [answer]},
    ]
    async with client.messages.stream(model=f"m-{fake.wire}", max_tokens=256, messages=messages) as stream:
        final = await stream.get_final_message()
    assert [block.text for block in final.content if block.type == "text"] == ["It said hi."]
    assert fake.speaker.tool_results(fake.received[1].body) == ["hi"]
    assert fake.refused == []
