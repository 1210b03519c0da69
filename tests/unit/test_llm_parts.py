"""The LLM side's pure parts: provider configuration, cost estimates, tool conversion and merging,
tool-call parsing, tool messages, and the assembly of streamed deltas."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from libs.common.contracts.llm import DEFAULT_MAX_TOKENS, Usage, cost_usd, max_cost_usd
from libs.common.contracts.llm_config import LlmSection, ModelPrice, ProviderConfig
from libs.common.settings.config_file import parse_config
from services.executor.llm_providers import _Stream
from services.ingress.llm.tools import ToolCallProblem, function_tool, merged_tools, parse_tool_call, tool_message
from tests.support.llm_provider import conversation_problem

pytestmark = pytest.mark.unit

PRICE = ModelPrice(input=2.0, output=10.0)


def _entry(name: str, schema: dict[str, object] | None = None) -> dict[str, object]:
    """A tool as `tools/list` lists it."""
    return {"name": name, "description": f"does {name}", "inputSchema": schema or {"type": "object"}}


def test_a_provider_needs_a_http_url_models_and_at_most_one_key_source() -> None:
    with pytest.raises(ValidationError, match="http"):
        ProviderConfig(base_url="ftp://x", models=["m"])
    with pytest.raises(ValidationError):
        ProviderConfig(base_url="http://x/v1", models=[])
    with pytest.raises(ValidationError, match="not both"):
        ProviderConfig(base_url="http://x/v1", models=["m"], api_key="k", api_key_env="K")
    assert ProviderConfig(base_url="http://x/v1/", models=["m"]).base_url == "http://x/v1"


def test_a_model_served_by_two_providers_is_refused() -> None:
    with pytest.raises(ValidationError, match="list the same model"):
        LlmSection.model_validate(
            {
                "providers": {
                    "a": {"base_url": "http://a", "models": ["m"]},
                    "b": {"base_url": "http://b", "models": ["m"]},
                }
            }
        )


def test_the_config_file_carries_an_llm_section() -> None:
    config = parse_config({"llm": {"providers": {"local": {"base_url": "http://localhost:11434/v1", "models": ["q"]}}}})
    assert config.llm.providers["local"].models == ["q"]


def test_cost_follows_the_price_table_and_a_model_without_price_is_free() -> None:
    assert cost_usd(PRICE, Usage(prompt_tokens=1_000_000, completion_tokens=100_000)) == pytest.approx(3.0)
    assert cost_usd(None, Usage(prompt_tokens=10**9, completion_tokens=10**9)) == 0.0


def test_the_maximum_cost_covers_every_completion_token_the_request_allows() -> None:
    body = {"max_tokens": 1000}
    low = max_cost_usd(PRICE, body, prompt_bytes=300)
    assert low == pytest.approx((100 * 2.0 + 1000 * 10.0) / 1e6)
    assert max_cost_usd(PRICE, {"max_completion_tokens": 10, "max_tokens": 1000}, 0) == pytest.approx(1e-4)
    unbounded = max_cost_usd(PRICE, {}, 0)
    assert unbounded == pytest.approx(DEFAULT_MAX_TOKENS * 10.0 / 1e6)
    assert max_cost_usd(PRICE, {"max_tokens": "lots"}, 0) == unbounded  # nonsense never lowers the estimate


def test_an_mcp_tool_becomes_a_function_tool_with_its_schema() -> None:
    schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    assert function_tool(_entry("echo__echo", schema)) == {
        "type": "function",
        "function": {"name": "echo__echo", "parameters": schema, "description": "does echo__echo"},
    }


def test_the_application_wins_a_name_clash_and_keeps_its_order() -> None:
    own = {"type": "function", "function": {"name": "a", "parameters": {}}}
    tools, injected = merged_tools([own], [function_tool(_entry("a")), function_tool(_entry("b"))])
    assert [t["function"]["name"] for t in tools] == ["a", "b"]
    assert tools[0] is own and injected == {"b"}


def test_tool_calls_parse_as_openai_sends_them() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "t", "arguments": '{"x": 1}'}}
    assert parse_tool_call(call) == ("call_1", "t", {"x": 1})
    assert parse_tool_call({"tool_call": call}) == ("call_1", "t", {"x": 1})
    assert parse_tool_call({"id": "c", "function": {"name": "t", "arguments": ""}}) == ("c", "t", {})


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"function": {"name": "t"}},
        {"id": "c", "type": "custom", "function": {"name": "t"}},
        {"id": "c", "function": {"arguments": "{}"}},
        {"id": "c", "function": {"name": "t", "arguments": "{not json"}},
        {"id": "c", "function": {"name": "t", "arguments": "[1, 2]"}},
        {"id": "c", "function": {"name": "t", "arguments": 5}},
    ],
)
def test_malformed_tool_calls_are_refused_with_a_reason(body: object) -> None:
    with pytest.raises(ToolCallProblem):
        parse_tool_call(body)


def test_tool_messages_carry_text_or_json_and_say_when_the_tool_failed() -> None:
    text = {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    assert tool_message("c", text) == {"role": "tool", "tool_call_id": "c", "content": "a\nb"}
    image = {"content": [{"type": "image", "data": "AA==", "mimeType": "image/png"}]}
    assert orjson.loads(tool_message("c", image)["content"])[0]["type"] == "image"
    assert tool_message("c", {"content": [], "structuredContent": {"n": 1}})["content"] == '{"n":1}'
    assert (
        tool_message("c", {"content": [{"type": "text", "text": "boom"}], "isError": True})["content"] == "Error: boom"
    )


def test_streamed_deltas_add_up_to_text_tool_calls_and_usage() -> None:
    stream = _Stream()
    for chunk in (
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "He"}}]},
        {"choices": [{"index": 0, "delta": {"content": "llo"}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "t"}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
    ):
        stream.add(chunk)
    assert "".join(stream.content) == "Hello"
    assert stream.tool_calls == {0: {"id": "c1", "type": "function", "function": {"name": "t", "arguments": '{"a":1}'}}}
    assert stream.finish_reason == "tool_calls"
    assert stream.usage == Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)


def _call(call_id: str) -> dict[str, object]:
    return {"id": call_id, "type": "function", "function": {"name": "t", "arguments": "{}"}}


def _asked(*ids: str) -> dict[str, object]:
    return {"role": "assistant", "content": None, "tool_calls": [_call(i) for i in ids]}


def _answer(call_id: str) -> dict[str, object]:
    return {"role": "tool", "tool_call_id": call_id, "content": "ok"}


USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        ([USER, {"content": "no role"}], "role"),
        ([USER, _asked("a", "b"), _answer("a")], "did not have response messages: b"),
        ([USER, _asked("a", "b"), _answer("a"), _asked("b"), _answer("b")], "did not have response messages: b"),
        ([USER, _asked("a"), _answer("a"), _asked("a"), _answer("a")], "duplicate tool_call id 'a'"),
        ([USER, _answer("a")], "must be a response to a preceding message"),
        ([USER, _asked("a"), _answer("a"), _answer("a")], "must be a response to a preceding message"),
    ],
)
def test_the_provider_double_refuses_conversations_strict_providers_refuse(
    messages: list[object], problem: str
) -> None:
    """The scripted provider the `/v1` tests run against is as strict as the real ones (else a test
    continuing a conversation through it would prove nothing)."""
    found = conversation_problem(messages)
    assert found is not None and problem in found


def test_the_provider_double_accepts_answered_calls_in_any_order() -> None:
    assert conversation_problem([USER, _asked("a", "b"), _answer("b"), _answer("a"), _asked("c"), _answer("c")]) is None
