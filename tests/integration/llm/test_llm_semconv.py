"""Chat completions in OpenTelemetry's GenAI conventions: the executor's CLIENT span toward the provider
(collected by the SDK's in-memory exporter) and the `gen_ai_client_*` histograms, after real
completions through the gateway against a scripted provider."""

from __future__ import annotations

import openai
import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.llm_gateway import DOWN_PASSWORD, DOWN_TOKEN, MODEL, sdk_client
from tests.support.llm_provider import Reply
from tests.support.metrics import Series, moved

pytestmark = pytest.mark.integration


def _registry() -> Series:
    """The process's metrics (the gateway runs in this process), parsed as a scrape would be."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(generate_latest(REGISTRY).decode())
        for sample in family.samples
    }


async def test_a_completion_is_a_chat_client_span_with_token_usage_and_duration_histograms(spans, gateway, provider):
    before = _registry()
    spans.clear()
    provider.script = [Reply("Hi there.", usage=(100, 20))]
    client = sdk_client(gateway)
    completion = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "Hi there."
    with pytest.raises(openai.APIStatusError):
        await client.chat.completions.create(model="gpt-down", messages=[{"role": "user", "content": "hi"}])
    after = _registry()

    chat = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "scripted", "gen_ai_request_model": MODEL}
    tokens = "gen_ai_client_token_usage"
    assert moved(before, after, f"{tokens}_sum", **chat, gen_ai_token_type="input") == 100
    assert moved(before, after, f"{tokens}_sum", **chat, gen_ai_token_type="output") == 20
    assert moved(before, after, f"{tokens}_count", **chat, gen_ai_token_type="input") == 1
    duration = "gen_ai_client_operation_duration_seconds_count"
    assert moved(before, after, duration, **chat, error_type="") == 1
    down = {**chat, "gen_ai_provider_name": "down", "gen_ai_request_model": "gpt-down"}
    assert moved(before, after, duration, **down, error_type="upstream_unavailable") == 1

    finished = {s.name: s for s in spans.get_finished_spans()}
    ok = finished[f"chat {MODEL}"]
    attributes = dict(ok.attributes or {})
    assert ok.kind.name == "CLIENT"
    assert attributes["gen_ai.operation.name"] == "chat" and attributes["gen_ai.provider.name"] == "scripted"
    assert attributes["gen_ai.request.model"] == MODEL and attributes["server.address"] == "127.0.0.1"
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (100, 20)
    failed = dict(finished["chat gpt-down"].attributes or {})
    assert failed["error.type"] == "upstream_unavailable"
    # the provider's base_url carries a password and a token: a span names only its host and port
    assert (failed["server.address"], failed["server.port"]) == ("127.0.0.1", 9)
    assert all(secret not in str(v) for v in failed.values() for secret in (DOWN_PASSWORD, DOWN_TOKEN))
