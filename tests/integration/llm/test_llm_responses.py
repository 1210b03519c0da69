"""`/v1/responses`, the OpenAI Responses front (stateless), driven by the official `openai` SDK's
`client.responses`: `input` items and `instructions` become the chat completion the provider behind
gets, the answer comes back as output items (or Responses' streaming events), the key's MCP tools
are injected and run on request (a `function_call` item executed through Bastion) or in agent mode."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import orjson
import pytest

from libs.common.settings import IngressSettings
from libs.common.web.guarded_http import shared_tls
from services.ingress.service import IngressService
from tests.integration.llm.conftest import FRONT_BODY_LIMIT
from tests.support.gateway import ADMIN_KEY, Gateway
from tests.support.llm_gateway import AGENT_KEY, MODEL, audit_rows_since, sdk_client, tool_names
from tests.support.llm_provider import Cut, Reply
from tests.support.polling import poll_until

pytestmark = pytest.mark.integration

WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "The weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
"""A function tool of the application's own: never run by Bastion."""


async def test_a_tool_round_trip_runs_the_mcp_tool_through_bastion(began, front_gateway, provider):
    provider.script = [
        Reply("Echoing. ", tool_calls=[("echo__echo", {"text": "hi"})], usage=(30, 6)),
        Reply("hi it is"),
    ]
    client = sdk_client(front_gateway)
    items: list[Any] = [{"role": "user", "content": "echo hi"}]
    response = await client.responses.create(model=MODEL, instructions="Be brief.", input=items, tools=[WEATHER])
    assert response.object == "response" and response.status == "completed"
    message, call = response.output
    assert message.type == "message" and response.output_text == "Echoing. "
    assert (call.type, call.name, orjson.loads(call.arguments)) == ("function_call", "echo__echo", {"text": "hi"})
    assert response.usage is not None and (response.usage.input_tokens, response.usage.output_tokens) == (30, 6)
    sent = provider.received[0].body
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "echo hi"}]
    assert tool_names(sent)[0] == "weather" and "echo__echo" in tool_names(sent)

    # run through Bastion, on the client's say-so, as docs/llm-fronts.md shows
    output = await client.post("/mcp/tool/execute", body=call.model_dump(), cast_to=object)
    assert output == {"type": "function_call_output", "call_id": call.call_id, "output": "hi"}
    items += [item.model_dump(exclude_none=True) for item in response.output] + [output]
    again = await client.responses.create(model=MODEL, input=items, tools=[WEATHER])
    assert again.output_text == "hi it is"
    assert provider.refused == []
    conversation = provider.received[1].body["messages"]
    assert [m["role"] for m in conversation] == ["user", "assistant", "tool"]
    assert conversation[1]["content"] == "Echoing. " and conversation[1]["tool_calls"][0]["id"] == call.call_id
    rows = await audit_rows_since(front_gateway, 3, began)
    llm = sorted((r for r in rows if r.kind == "llm_request"), key=lambda r: r.ts)
    (tool,) = [r for r in rows if r.kind == "tool_call"]
    assert len(llm) == 2 and tool.parent_id == llm[0].event_id


async def test_a_stream_sends_the_responses_events_in_order(front_gateway, provider):
    provider.script = [Reply("Hello there", tool_calls=[("weather", {"city": "Oslo"})])]
    stream = await sdk_client(front_gateway).responses.create(
        model=MODEL, input="weather in Oslo?", tools=[WEATHER], stream=True
    )
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    text = ["response.output_item.added", "response.content_part.added", *["response.output_text.delta"] * 3]
    text += ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    call = ["response.output_item.added", *["response.function_call_arguments.delta"] * 2]
    call += ["response.function_call_arguments.done", "response.output_item.done"]
    assert kinds == ["response.created", "response.in_progress", *text, *call, "response.completed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    completed = events[-1].response
    assert completed.output_text == "Hello there"
    (function_call,) = [item for item in completed.output if item.type == "function_call"]
    assert orjson.loads(function_call.arguments) == {"city": "Oslo"} and function_call.status == "completed"
    assert completed.usage is not None and completed.usage.output_tokens == 5


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_agent_mode_runs_the_mcp_tool_and_gives_the_transcript_as_input_items(front_gateway, provider, stream):
    provider.script = [Reply("Checking. ", tool_calls=[("echo__echo", {"text": "x"})]), Reply("Done.")]
    client = sdk_client(front_gateway, AGENT_KEY)
    if stream:
        events = [e async for e in await client.responses.create(model=MODEL, input="go", stream=True)]
        response = events[-1].response
        assert response.output_text == "Checking. Done."  # every round's text, streamed as it came
    else:
        response = await client.responses.create(model=MODEL, input="go")
        assert response.output_text == "Done."
    assert [item.type for item in response.output] == ["message"]
    summary = response.model_extra["bastion"]
    assert [item["type"] for item in summary["transcript"]] == ["message", "function_call", "function_call_output"]
    assert summary["transcript"][2]["output"] == "x"
    assert provider.received[1].body["messages"][-1]["content"] == "x"


async def test_a_stream_cut_midway_ends_in_response_failed(began, front_gateway, provider):
    provider.script = [Cut("Half an answer that never")]
    stream = await sdk_client(front_gateway).responses.create(model=MODEL, input="hi", stream=True)
    events = [event async for event in stream]
    assert [e.type for e in events][:2] == ["response.created", "response.in_progress"]
    failed = events[-1]
    assert failed.type == "response.failed" and failed.response.status == "failed"
    assert failed.response.error is not None and failed.response.error.message
    assert "response.completed" not in [e.type for e in events]
    (row,) = await audit_rows_since(front_gateway, 1, began)
    assert (row.kind, row.status) == ("llm_request", "error")


async def test_a_conversation_continues_by_previous_response_id_on_any_replica_for_its_key_only(
    front_gateway, provider
):
    provider.script = [Reply("I am Bastion."), Reply("You asked who I am.")]
    first = await sdk_client(front_gateway).responses.create(model=MODEL, instructions="Be brief.", input="who?")
    assert first.store is True
    # another ingress replica on the same bus, which never saw the first turn
    replica = IngressService(IngressSettings(nats_url=front_gateway.nats_url, port=0, instance="-b"))
    await replica.start()
    client = openai.AsyncOpenAI(base_url=replica.url.replace("/mcp", "/v1"), api_key=ADMIN_KEY, max_retries=0)
    try:
        await poll_until(lambda: MODEL in replica.models.models, "the provider in replica b's view")
        second = await client.responses.create(model=MODEL, input="what did I ask?", previous_response_id=first.id)
        assert second.output_text == "You asked who I am."
        # the kept turns, then the new one; the first request's instructions are not carried over
        assert [(m["role"], m["content"]) for m in provider.received[1].body["messages"]] == [
            ("user", "who?"),
            ("assistant", "I am Bastion."),
            ("user", "what did I ask?"),
        ]
        with pytest.raises(openai.NotFoundError) as foreign:
            await sdk_client(front_gateway, AGENT_KEY).responses.create(
                model=MODEL, input="and?", previous_response_id=second.id
            )
        assert "made with another key" in foreign.value.message and len(provider.received) == 2
    finally:
        await client.close()
        await replica.stop()


async def test_a_tool_result_continues_the_response_that_called_the_tool(front_gateway, provider):
    provider.script = [Reply("Echoing. ", tool_calls=[("echo__echo", {"text": "hi"})]), Reply("hi it is")]
    client = sdk_client(front_gateway)
    first = await client.responses.create(model=MODEL, input="echo hi")
    call = first.output[-1]
    output = await client.post("/mcp/tool/execute", body=call.model_dump(), cast_to=object)
    again = await client.responses.create(model=MODEL, input=[output], previous_response_id=first.id)
    assert again.output_text == "hi it is" and provider.refused == []
    conversation = provider.received[1].body["messages"]
    assert [m["role"] for m in conversation] == ["user", "assistant", "tool"]
    assert conversation[1]["tool_calls"][0]["id"] == conversation[2]["tool_call_id"] == call.call_id


async def test_a_response_not_stored_cannot_be_continued(front_gateway, provider):
    provider.script = [Reply("Forgotten.")]
    first = await sdk_client(front_gateway).responses.create(model=MODEL, input="hi", store=False)
    assert first.store is False
    with pytest.raises(openai.NotFoundError):
        await sdk_client(front_gateway).responses.create(model=MODEL, input="more", previous_response_id=first.id)
    assert len(provider.received) == 1


async def _post(gateway: Gateway, body: bytes | dict[str, Any]) -> httpx.Response:
    base = gateway.url.removesuffix("/mcp")
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"}
    async with httpx.AsyncClient(timeout=30, verify=shared_tls()) as http:
        return await http.post(f"{base}/v1/responses", content=content, headers=headers)


_VALID = {"model": MODEL, "input": "hi"}
ATTACKS: dict[str, tuple[Any, str]] = {
    "not json": (b"{not json", "not valid JSON"),
    "input a number": ({**_VALID, "input": 3}, "input"),
    "input empty": ({**_VALID, "input": []}, "input"),
    "an item a string": ({**_VALID, "input": ["hi"]}, "input[0]"),
    "an unknown item": ({**_VALID, "input": [{"type": "computer_call"}]}, "computer_call"),
    "a bad role": ({**_VALID, "input": [{"role": "tool", "content": "x"}]}, "role"),
    "a file part": (
        {**_VALID, "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
        "input_file",
    ),
    "a call without call_id": ({**_VALID, "input": [{"type": "function_call", "name": "x"}]}, "call_id"),
    "arguments an object": (
        {**_VALID, "input": [{"type": "function_call", "call_id": "c", "name": "x", "arguments": {}}]},
        "arguments",
    ),
    "output a number": ({**_VALID, "input": [{"type": "function_call_output", "call_id": "c", "output": 1}]}, "output"),
    "a built-in tool": ({**_VALID, "tools": [{"type": "web_search"}]}, "function tools"),
    "instructions a list": ({**_VALID, "instructions": ["x"]}, "instructions"),
    "max_output_tokens negative": ({**_VALID, "max_output_tokens": -1}, "max_output_tokens"),
    "a bad tool_choice": ({**_VALID, "tool_choice": "sometimes"}, "tool_choice"),
    "model missing": ({"input": "hi"}, "model"),
}


async def test_malformed_requests_get_a_clear_openai_error_and_no_provider_call(began, front_gateway, provider):
    for name, (body, says) in ATTACKS.items():
        answer = await _post(front_gateway, body)
        error = answer.json()["error"]
        assert answer.status_code == 400 and error["type"] == "invalid_request_error", name
        assert says in error["message"], (name, error)
    oversized = await _post(front_gateway, {**_VALID, "instructions": "x" * FRONT_BODY_LIMIT})
    assert oversized.status_code == 413 and "larger than" in oversized.json()["error"]["message"]
    assert provider.received == []
    provider.script = [Reply("still here")]
    assert (await _post(front_gateway, _VALID)).json()["output"][0]["content"][0]["text"] == "still here"
    rows = await audit_rows_since(front_gateway, 1, began)
    assert [r.kind for r in rows] == ["llm_request"]  # the refused ones reached no provider
