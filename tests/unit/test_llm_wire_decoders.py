"""Each wire's stream decoder reads its provider's stream however the bytes arrive: the fake
provider's recorded stream (tests/support/provider_wires) fed whole and fed one byte at a time
adds up to the same OpenAI chunks, text, tool call, finish reason and usage."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from libs.common.contracts.errors import ErrorKind
from libs.common.contracts.llm_config import ProviderConfig
from services.executor.llm_wires import wire_for
from tests.support.provider_wires import WIRES, Call, Reply, speaker_for

pytestmark = pytest.mark.unit

CONFIGS: dict[str, dict[str, Any]] = {
    "openai": {"base_url": "https://api.example.com/v1"},
    "azure": {"base_url": "https://res.openai.azure.com/openai"},
    "anthropic": {},
    "gemini": {},
    "vertex": {"project": "my-project", "location": "us-central1"},
    "bedrock": {"region": "us-east-1"},
}


def _decoded(wire: str, body: bytes, step: int) -> tuple[list[dict[str, Any]], bool]:
    decoder = wire_for(ProviderConfig(kind=wire, models=["m"], **CONFIGS[wire]), "key").decoder("m")
    chunks: list[dict[str, Any]] = []
    for i in range(0, len(body), step):
        chunks += decoder.feed(body[i : i + step])
        assert decoder.failure is None
    return [_stable(c) for c in chunks + decoder.end()], decoder.finished


def _stable(chunk: dict[str, Any]) -> dict[str, Any]:
    """`chunk` less what two decodings make anew: the creation second, and the ids Gemini's calls lack."""
    chunk = {k: v for k, v in chunk.items() if k != "created"}
    for choice in chunk["choices"]:
        for part in choice["delta"].get("tool_calls") or []:
            part.pop("id", None)
    return chunk


@pytest.mark.parametrize("wire", WIRES)
def test_a_stream_decodes_the_same_whole_or_byte_by_byte(wire):
    speaker = speaker_for(wire)
    reply = Reply(text="Hello there", tool_calls=[("lookup", {"city": "Paris"})], usage=(10, 5), cached=2)
    calls = [Call(speaker.call_ids(1)[0] or "call_1", "lookup", {"city": "Paris"})]
    body = b"".join(speaker.stream(reply, calls, "m", {"stream_options": {"include_usage": True}}, whole=True).frames)
    whole, finished = _decoded(wire, body, len(body))
    assert finished and _decoded(wire, body, 1) == (whole, True)
    deltas = [c["choices"][0] for c in whole if c["choices"]]
    assert "".join(d["delta"].get("content") or "" for d in deltas) == "Hello there"
    parts = [p for d in deltas for p in d["delta"].get("tool_calls") or []]
    assert "".join(p["function"].get("name") or "" for p in parts) == "lookup"
    assert orjson.loads("".join(p["function"].get("arguments") or "" for p in parts)) == {"city": "Paris"}
    assert [d["finish_reason"] for d in deltas if d["finish_reason"]] == ["tool_calls"]
    usage = whole[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["prompt_tokens_details"]["cached_tokens"]) == (
        10,
        5,
        2,
    )


def test_a_stream_that_stops_short_is_not_finished():
    speaker = speaker_for("anthropic")
    body = b"".join(speaker.stream(Reply(text="Half an answer"), [], "m", {}, whole=False).frames)
    chunks, finished = _decoded("anthropic", body, 7)
    assert not finished and "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Half"


_ERROR_STREAMS: dict[str, list[str]] = {
    "anthropic": [
        'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":3}}}',
        'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        '"content_block":{"type":"text","text":"Hi"}}',
        'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
    ],
    "gemini": [
        'data: {"responseId":"r1","candidates":[{"content":{"parts":[{"text":"Hi"}]}}]}',
        'data: {"error":{"code":503,"message":"Overloaded"}}',
    ],
}


@pytest.mark.parametrize("wire", sorted(_ERROR_STREAMS))
def test_an_error_event_mid_stream_ends_the_chunks_with_the_providers_failure(wire):
    after = 'data: {"candidates":[{"content":{"parts":[{"text":"never"}]}}]}'  # nothing after the error counts
    body = "".join(f"{event}\n\n" for event in [*_ERROR_STREAMS[wire], after, "data: [1]"]).encode()
    decoder = wire_for(ProviderConfig(kind=wire, models=["m"], **CONFIGS[wire]), "key").decoder("m")
    chunks = decoder.feed(body)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Hi"
    assert decoder.failure is not None and not decoder.finished
    assert (decoder.failure.kind, decoder.failure.detail) == (ErrorKind.UPSTREAM_UNAVAILABLE, "Overloaded")
