"""The Gemini front's translators on their own: what a `generateContent` body becomes as the chat
completion on the bus, for the shapes the integration tests do not send (Schema types, images, calls
paired by id, split model turns, the agent transcript read back, what is refused)."""

from __future__ import annotations

from typing import Any

import pytest

from services.ingress.llm import gemini_in
from services.ingress.llm.gemini_out import contents, function_call_part
from services.ingress.llm.tools import answer_in_form, as_tool_call
from services.ingress.llm.wire import Refused

pytestmark = pytest.mark.unit


def _chat(*turns: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return gemini_in.chat_request({"model": "m", "contents": list(turns), **fields})


def _user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


def test_an_openapi_schema_becomes_a_json_schema():
    schema = {
        "type": "OBJECT",
        "properties": {
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
            "n": {"type": "INTEGER", "nullable": True},
        },
        "required": ["tags"],
        "propertyOrdering": ["tags", "n"],
    }
    assert gemini_in.json_schema(schema) == {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}}, "n": {"type": ["integer", "null"]}},
        "required": ["tags"],
    }


def test_settings_tools_and_tool_config_translate():
    chat = _chat(
        _user({"text": "look"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}),
        systemInstruction={"parts": [{"text": "Be brief."}, {"text": "Be kind."}]},
        tools=[{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "object"}}]}],
        toolConfig={"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
        generationConfig={"temperature": 0.1, "maxOutputTokens": 9, "stopSequences": ["X"], "topK": 3},
    )
    assert chat["messages"][0] == {"role": "system", "content": "Be brief.\nBe kind."}
    assert chat["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA"},
    }
    assert chat["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert (chat["temperature"], chat["max_tokens"], chat["stop"]) == (0.1, 9, ["X"])
    assert "top_k" not in chat  # dropped: chat completions has no word for it


def test_function_responses_pair_with_their_calls_by_id_then_by_name_and_split_model_turns_join():
    call = {"functionCall": {"name": "add", "args": {"a": 1}}, "thoughtSignature": "c2ln"}
    second = {"functionCall": {"name": "add", "args": {"a": 2}, "id": "given"}}
    chat = _chat(
        _user({"text": "add twice"}),
        {"role": "model", "parts": [{"text": "Adding."}]},
        {"role": "model", "parts": [call, second]},
        _user(
            {"functionResponse": {"name": "add", "id": "given", "response": {"result": "2"}}},
            {"functionResponse": {"name": "add", "response": {"error": "no"}}},
        ),
    )
    assistant, first_result, second_result = chat["messages"][1:]
    ids = [c["id"] for c in assistant["tool_calls"]]
    assert assistant["content"] == "Adding." and ids == ["call_2_0__thought__c2ln", "given"]
    assert first_result == {"role": "tool", "tool_call_id": "given", "content": "2"}
    assert second_result == {"role": "tool", "tool_call_id": ids[0], "content": "Error: no"}


def test_an_agent_transcript_reads_back_as_the_calls_it_came_from():
    call = {"id": "call_1__thought__c2ln", "type": "function", "function": {"name": "echo", "arguments": '{"t":1}'}}
    transcript = [{"role": "assistant", "content": None, "tool_calls": [call]}]
    transcript.append({"role": "tool", "tool_call_id": call["id"], "content": "1"})
    turns = contents(transcript)
    assert turns[0]["parts"] == [function_call_part(call["id"], "echo", '{"t":1}')]
    assert turns[0]["parts"][0]["thoughtSignature"] == "c2ln"
    chat = _chat(_user({"text": "go"}), *turns)
    assert chat["messages"][1]["tool_calls"][0]["id"] == call["id"]
    assert chat["messages"][2] == {"role": "tool", "tool_call_id": call["id"], "content": "1"}


def test_a_function_call_part_executes_and_answers_as_a_function_response():
    form, call = as_tool_call({"functionCall": {"name": "echo", "args": {"t": 1}, "id": "c"}, "thoughtSignature": "s"})
    assert (form, call["id"], call["function"]["arguments"]) == ("gemini", "c__thought__s", {"t": 1})
    answer = answer_in_form(form, {"role": "tool", "tool_call_id": call["id"], "content": "1"}, False, "echo")
    assert answer == {"functionResponse": {"id": "c", "name": "echo", "response": {"result": "1"}}}


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"cachedContent": "cachedContents/1"}, "cachedContent"),
        ({"generationConfig": {"candidateCount": 2}}, "candidateCount"),
        ({"generationConfig": {"responseModalities": ["IMAGE"]}}, "responseModalities"),
        ({"tools": [{"codeExecution": {}}]}, "codeExecution"),
        ({"toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}}, "mode"),
        ({"contents": [_user({"executableCode": {"code": "1"}})]}, "executableCode"),
        ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "role"),
        ({"contents": []}, "contents"),
    ],
)
def test_what_is_not_served_is_refused_naming_it(fields, named):
    with pytest.raises(Refused) as refused:
        gemini_in.chat_request({"model": "m", "contents": [_user({"text": "hi"})], **fields})
    assert refused.value.status == 400 and named in str(refused.value)


def test_the_key_is_read_from_googles_header_or_the_query_of_a_gemini_route_only():
    assert gemini_in.api_key("/v1/chat/completions", b"", {"x-goog-api-key": "k"}) == "k"
    assert gemini_in.api_key("/v1beta/models/m:generateContent", b"alt=sse&key=k", {}) == "k"
    assert gemini_in.api_key("/v1/models/m:generateContent", b"key=k", {}) == "k"
    assert gemini_in.api_key("/v1/chat/completions", b"key=k", {}) is None
