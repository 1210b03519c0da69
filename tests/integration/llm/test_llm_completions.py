"""Chat completions end to end: the official `openai` SDK -> ingress `/v1` -> policy (key, budgets)
-> executor -> a scripted OpenAI-compatible provider speaking the real wire format; explicit
execution, streaming, tool injection, provider failures and budgets."""

from __future__ import annotations

import logging

import httpx
import openai
import pytest

from tests.support.gateway import ADMIN_KEY, READONLY_KEY
from tests.support.llm_gateway import (
    AGENT_KEY,
    BROKE_KEY,
    DOCS_MODEL,
    DOWN_PASSWORD,
    DOWN_TOKEN,
    MODEL,
    PRICEY,
    PROVIDER_KEY,
    SQUAD_KEY,
    StackShape,
    audit_rows_since,
    execute_call,
    sdk_client,
    tool_names,
)
from tests.support.llm_provider import Cut, Drop, Fail, Reply, Stall, Stop

pytestmark = pytest.mark.integration


# the tests that break the scripted provider's answers fail it up to five times in a row: its breaker
# must not open on one test and refuse the next one's calls (`down`'s is the one tested)
STACK = StackShape(admin=False, failure_threshold=10)
"""conftest's gateway less the admin API (no test here uses it): each key with a budget (`broke`, the
`squad` team) and each provider made to fail for good (`down`, `slow`) serves one test only."""


async def test_models_and_authentication(gateway):
    models = await sdk_client(gateway).models.list()
    assert {model.id for model in models.data} == {MODEL, PRICEY, DOCS_MODEL, "gpt-down", "gpt-slow"}
    with pytest.raises(openai.AuthenticationError):
        await sdk_client(gateway, "bk_not_a_key_at_all_000000000").models.list()


async def test_explicit_mode_returns_tool_calls_and_execute_runs_one(began, gateway, provider):
    provider.script = [Reply(tool_calls=[("echo__echo", {"text": "hello"})], usage=(100, 20))]
    raw = await sdk_client(gateway).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "say hello"}]
    )
    completion = raw.parse()
    parent = raw.headers["x-bastion-request-id"]
    # the provider got the key's MCP tools as function tools, and the provider key, never the agent's
    sent = provider.received[0]
    assert {"echo__echo", "echo__add", "notes__add_note"} <= set(tool_names(sent.body))
    assert sent.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    echo = next(t for t in sent.body["tools"] if t["function"]["name"] == "echo__echo")
    assert echo["function"]["parameters"]["properties"]["text"]["type"] == "string"
    # explicit mode: the proposed call comes back untouched, nothing ran
    (call,) = completion.choices[0].message.tool_calls
    assert call.function.name == "echo__echo" and call.function.arguments == '{"text":"hello"}'
    assert completion.choices[0].finish_reason == "tool_calls"

    # as docs/llm.md shows it: the SDK's own client posts the tool call
    answer = await sdk_client(gateway).post("/mcp/tool/execute", body=call.model_dump(), cast_to=object)
    assert answer == {"role": "tool", "tool_call_id": call.id, "content": "hello"}

    rows = await audit_rows_since(gateway, 2, began)
    llm = next(r for r in rows if r.kind == "llm_request")
    assert (llm.event_id, llm.server, llm.tool, llm.status) == (parent, "scripted", MODEL, "ok")
    assert (llm.prompt_tokens, llm.completion_tokens, llm.tool_calls) == (100, 20, ["echo__echo"])
    assert llm.cost_usd == pytest.approx((100 * 1.0 + 20 * 2.0) / 1e6)
    tool = next(r for r in rows if r.kind == "tool_call")
    assert (tool.name, tool.status, tool.parent_id) == ("echo__echo", "ok", parent)
    assert all(PROVIDER_KEY not in row.model_dump_json() for row in rows)


async def test_streaming_relays_chunks_and_tool_call_deltas(began, gateway, provider):
    provider.script = [Reply(text="Let me check that.", tool_calls=[("echo__add", {"a": 2, "b": 40})], usage=(7, 9))]
    stream = await sdk_client(gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "add"}], stream=True
    )
    text, arguments, names, finish = [], [], [], None
    async for chunk in stream:
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            for part in choice.delta.tool_calls or []:
                names.append(part.function.name or "")
                arguments.append(part.function.arguments or "")
            finish = choice.finish_reason or finish
    assert "".join(text) == "Let me check that."
    assert "".join(names) == "echo__add" and "".join(arguments) == '{"a":2,"b":40}'
    assert finish == "tool_calls"
    assert provider.received[0].body["stream_options"] == {"include_usage": True}
    (row,) = [r for r in await audit_rows_since(gateway, 1, began) if r.kind == "llm_request"]
    assert (row.status, row.prompt_tokens, row.completion_tokens, row.tool_calls) == ("ok", 7, 9, ["echo__add"])


async def test_an_application_tool_wins_a_name_clash_and_is_never_executed(began, gateway, provider):
    own = {
        "type": "function",
        "function": {"name": "echo__echo", "description": "the app's own", "parameters": {"type": "object"}},
    }
    provider.script = [Reply(tool_calls=[("echo__echo", {"text": "mine"})])]
    completion = await sdk_client(gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], tools=[own]
    )
    names = tool_names(provider.received[0].body)
    assert names.count("echo__echo") == 1
    assert provider.received[0].body["tools"][0] == own  # the application's definition, not the MCP one
    assert completion.choices[0].message.tool_calls[0].function.name == "echo__echo"
    rows = await audit_rows_since(gateway, 1, began)
    assert [r.kind for r in rows] == ["llm_request"]  # Bastion ran nothing


async def test_a_forbidden_tool_proposed_by_the_model_never_runs(began, gateway, provider):
    provider.script = [Reply(tool_calls=[("echo__add", {"a": 1, "b": 2})])]
    completion = await sdk_client(gateway, READONLY_KEY).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "add"}]
    )
    assert set(tool_names(provider.received[0].body)) == {"echo__echo", "notes__list_notes"}
    (call,) = completion.choices[0].message.tool_calls
    refused = await execute_call(gateway, call.model_dump(), READONLY_KEY)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    rows = await audit_rows_since(gateway, 2, began)
    tool = next(r for r in rows if r.kind == "tool_call")
    assert (tool.status, tool.execution) == ("denied", "not_run")


async def test_budget_refusal_happens_before_the_provider_is_called(began, gateway, provider):
    provider.script = [Reply(text="never")]
    with pytest.raises(openai.APIStatusError) as refused:
        await sdk_client(gateway, BROKE_KEY).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1000
        )
    assert refused.value.status_code == 402
    assert refused.value.body["code"] == "budget_exceeded"
    assert provider.received == []
    (row,) = await audit_rows_since(gateway, 1, began)
    assert (row.kind, row.status, row.error_kind) == ("llm_request", "denied", "budget_exceeded")


async def test_a_dropped_connection_is_retried_before_any_token(gateway, provider):
    provider.script = [Drop(), Reply(text="second time lucky")]
    completion = await sdk_client(gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "second time lucky"
    assert len(provider.received) == 2


async def test_provider_errors_reach_the_client_without_the_provider_key(began, gateway, provider, caplog):
    caplog.set_level(logging.DEBUG)
    provider.script = [Fail(500, f"upstream exploded near {PROVIDER_KEY}")]
    with pytest.raises(openai.APIStatusError) as failed:
        await sdk_client(gateway).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert failed.value.status_code == 502
    assert "HTTP 500" in failed.value.message and PROVIDER_KEY not in failed.value.message
    (row,) = await audit_rows_since(gateway, 1, began)
    assert row.status == "error" and PROVIDER_KEY not in (row.error or "")
    # the provider's words (which may quote the prompt) are the client's; the row's error column says what happened
    assert "exploded" in failed.value.message
    assert row.error is not None and row.error.endswith("answered HTTP 500") and "exploded" not in row.error
    assert caplog.records and PROVIDER_KEY not in caplog.text  # in no service's log line, at any level


async def test_a_stalled_provider_times_out(began, gateway, provider):
    provider.script = [Stall()]
    with pytest.raises(openai.APIStatusError) as stalled:
        await sdk_client(gateway).chat.completions.create(
            model="gpt-slow", messages=[{"role": "user", "content": "hi"}]
        )
    assert stalled.value.status_code == 504 and stalled.value.body["code"] == "upstream_timeout"
    (row,) = await audit_rows_since(gateway, 1, began)
    assert (row.status, row.error_kind, row.server) == ("error", "upstream_timeout", "slow")


@pytest.mark.parametrize(
    ("step", "why"),
    [(Cut, "broke mid-answer"), (Stop, "before the answer was complete")],
    ids=["connection-broken", "stream-ended-early"],
)
async def test_a_stream_cut_after_its_first_tokens_ends_in_an_error_and_is_not_retried(
    began, gateway, provider, step, why
):
    """The connection breaking, or the provider closing its stream cleanly before a finish reason or
    `[DONE]`: the client must not take the text so far for the whole answer; a retry would repeat it."""
    provider.script = [step("Half an ans"), step("Half again"), Reply("a retry would repeat the text")]
    stream = await sdk_client(gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = []
    with pytest.raises(openai.APIError) as cut:
        async for chunk in stream:
            text += [choice.delta.content or "" for choice in chunk.choices]
    assert "".join(text) == "Half an ans"  # relayed as it came, then the error as an event of its own
    assert why in cut.value.message
    # on the wire: the error event ends the stream, and no `[DONE]` follows it
    base = gateway.url.removesuffix("/mcp")
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with httpx.AsyncClient(timeout=30) as http:
        raw = await http.post(
            f"{base}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {ADMIN_KEY}"}
        )
    events = [event for event in raw.text.split("\n\n") if event]
    assert events[-1].startswith('data: {"error":') and "data: [DONE]" not in events
    assert len(provider.received) == 2  # tokens had reached the client: no second attempt
    rows = await audit_rows_since(gateway, 2, began)
    assert [(r.status, r.error_kind) for r in rows] == [("error", "upstream_unavailable")] * 2


@pytest.mark.parametrize("key", [ADMIN_KEY, AGENT_KEY], ids=["explicit", "agent"])
async def test_a_usage_chunk_comes_only_when_the_client_asks_for_it(began, gateway, provider, key):
    """A chunk without choices breaks the common `chunk.choices[0]` loop: OpenAI sends one only on
    `stream_options.include_usage`, and so must Bastion (which always asks the provider for usage)."""
    provider.script = [Reply("Hi there.", usage=(3, 4)), Reply("Hi again.", usage=(3, 4))]
    client = sdk_client(gateway, key)
    messages = [{"role": "user", "content": "hi"}]
    plain = [chunk async for chunk in await client.chat.completions.create(model=MODEL, messages=messages, stream=True)]
    assert plain and all(chunk.choices and chunk.usage is None for chunk in plain)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in plain) == "Hi there."
    asked = await client.chat.completions.create(
        model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    *chunks, last = [chunk async for chunk in asked]
    assert all(chunk.choices for chunk in chunks)
    assert last.choices == [] and last.usage is not None and last.usage.completion_tokens == 4
    rows = await audit_rows_since(gateway, 2, began)
    assert [(r.status, r.completion_tokens) for r in rows] == [("ok", 4)] * 2  # audit has the usage either way


async def test_tool_prices_and_token_costs_share_the_team_budget(began, gateway, provider):
    """Team budget $0.01: a tool call ($0.004) and a completion (at most $0.005, actually $0.004) fit;
    then neither another completion nor another tool call does, though each alone would have."""
    client = sdk_client(gateway, SQUAD_KEY)
    call = {"id": "call_1", "type": "function", "function": {"name": "echo__echo", "arguments": '{"text": "paid"}'}}
    assert (await execute_call(gateway, call, SQUAD_KEY)).status_code == 200
    provider.script = [Reply("four tokens", usage=(10, 4))]
    completion = await client.chat.completions.create(
        model=PRICEY, messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert completion.choices[0].message.content == "four tokens"
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(model=PRICEY, messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    assert refused.value.status_code == 402 and refused.value.body["code"] == "budget_exceeded"
    assert len(provider.received) == 1  # refused before the provider was called
    again = await execute_call(gateway, {**call, "id": "call_2"}, SQUAD_KEY)
    assert again.status_code == 402 and again.json()["error"]["code"] == "budget_exceeded"
    rows = await audit_rows_since(gateway, 4, began)
    llm = sorted((r for r in rows if r.kind == "llm_request"), key=lambda r: r.ts)
    assert [(r.status, r.cost_usd) for r in llm] == [("ok", pytest.approx(0.004)), ("denied", 0.0)]


async def test_an_unreachable_provider_opens_its_breaker_and_only_its_own(gateway, provider):
    client = sdk_client(gateway)
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as down:
            await client.chat.completions.create(model="gpt-down", messages=[{"role": "user", "content": "hi"}])
        assert down.value.status_code == 502
        # the URL it tried, without the credentials its base_url carries (userinfo, a token in the query)
        assert "http://127.0.0.1:9/v1/chat/completions" in down.value.message
        assert all(secret not in down.value.message for secret in ("bastion:", "@", DOWN_PASSWORD, DOWN_TOKEN))
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(model="gpt-down", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 503 and refused.value.body["code"] == "circuit_open"
    provider.script = [Reply("still here")]  # another provider's breaker is its own
    completion = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "still here"


async def test_an_unknown_model_is_a_404_naming_the_served_ones(gateway):
    with pytest.raises(openai.NotFoundError) as unknown:
        await sdk_client(gateway).chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert unknown.value.body["code"] == "model_not_found"
    assert "'nope'" in unknown.value.message and MODEL in unknown.value.message
