"""The fronts' request translators on their own: what a Messages or Responses body becomes as the chat
completion on the bus, for the shapes the integration tests do not send (tool results with images,
thinking blocks, errors, reasoning items, split turns)."""

from __future__ import annotations

import pytest

from services.ingress.llm import messages_in, responses_in
from services.ingress.llm.messages_out import transcript
from services.ingress.llm.responses_out import input_items
from services.ingress.llm.tools import ToolCallProblem, answer_in_form, as_tool_call, parse_tool_call
from services.ingress.llm.wire import Refused

pytestmark = pytest.mark.unit

IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
CALL = {"id": "toolu_1", "type": "function", "function": {"name": "Read", "arguments": '{"path":"a.png"}'}}


def _messages(*turns: dict) -> list[dict]:
    return messages_in.chat_request({"model": "m", "max_tokens": 5, "messages": list(turns)})["messages"]


def test_a_tool_result_answers_first_and_its_images_follow_in_a_user_message():
    """Claude Code's Read returns an image in a tool_result: a `tool` message carries text only."""
    chat = _messages(
        {"role": "user", "content": "read it"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hm", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a.png"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "and then?"},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "1 KB"}, IMAGE]},
            ],
        },
    )
    assert chat[1] == {"role": "assistant", "content": None, "tool_calls": [CALL]}
    assert chat[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "1 KB"}
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert chat[3] == {"role": "user", "content": [{"type": "text", "text": "and then?"}, image]}


def test_a_failed_tool_result_reads_as_an_error_to_the_model():
    chat = _messages(
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "x", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "boom", "is_error": True}]},
    )
    assert chat[-1] == {"role": "tool", "tool_call_id": "t", "content": "Error: boom"}


def test_an_agent_transcript_reads_back_as_the_turns_it_came_from():
    """What agent mode hands back (`bastion.transcript`) is a conversation the front itself accepts."""
    openai = [
        {"role": "assistant", "content": "On it. ", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "ok"},
    ]
    turns = transcript(openai)
    assert [t["role"] for t in turns] == ["assistant", "user"]
    assert _messages({"role": "user", "content": "go"}, *turns)[1:] == openai
    items = input_items(openai)
    chat = responses_in.chat_request({"model": "m", "input": [{"role": "user", "content": "go"}, *items]})
    assert chat["messages"][1:] == openai


def test_responses_input_items_join_their_turn_and_reasoning_is_dropped():
    chat = responses_in.chat_request(
        {
            "model": "m",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "c"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "1"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "2"}]},
            ],
            "max_output_tokens": 64,
            "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}},
        }
    )
    roles = [m["role"] for m in chat["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "tool"]
    assert chat["messages"][1]["content"] == "ab"
    assert [c["id"] for c in chat["messages"][2]["tool_calls"]] == ["c1", "c2"]
    assert chat["messages"][4]["content"] == "2"
    assert chat["max_tokens"] == 64 and chat["response_format"]["json_schema"]["name"] == "s"


def test_each_front_executes_a_call_in_its_own_form():
    use = {"type": "tool_use", "id": "toolu_9", "name": "echo__echo", "input": {"text": "hi"}}
    item = {"type": "function_call", "call_id": "call_9", "name": "echo__echo", "arguments": '{"text":"hi"}'}
    for body, form, call_id in ((use, "messages", "toolu_9"), (item, "responses", "call_9")):
        found, call = as_tool_call(body)
        assert found == form and parse_tool_call(call) == (call_id, "echo__echo", {"text": "hi"})
    message = {"role": "tool", "tool_call_id": "toolu_9", "content": "Error: no"}
    assert answer_in_form("messages", message, True)["is_error"] is True
    assert answer_in_form("responses", {**message, "tool_call_id": "c"}, False)["call_id"] == "c"
    with pytest.raises(ToolCallProblem):
        as_tool_call({**use, "input": "text"})


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "max_tokens": True, "messages": [{"role": "user", "content": "x"}]},
        {"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "image"}]}]},
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
            "tool_choice": {"type": "tool"},
        },
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stop_sequences": "END"},
    ],
    ids=["max_tokens a bool", "an image from the assistant", "a tool choice without a name", "stop a string"],
)
def test_messages_refuses_what_anthropic_refuses(body):
    with pytest.raises(Refused) as refused:
        messages_in.chat_request(body)
    assert refused.value.status == 400


def test_an_assistant_turn_of_thinking_only_stays_a_message_strict_providers_accept():
    chat = _messages(
        {"role": "user", "content": "hm"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "...", "signature": "s"}]},
        {"role": "user", "content": "well?"},
    )
    assert chat[1] == {"role": "assistant", "content": ""}
