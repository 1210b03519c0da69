"""Fake providers' wires (tests/support/llm_provider.py serves them): one speaker per provider kind."""

from __future__ import annotations

from .anthropic import AnthropicSpeaker
from .base import Answer, Call, Reply, Speaker, WireSpeaker
from .bedrock import BedrockSpeaker
from .gemini import GeminiSpeaker, VertexSpeaker
from .openai import AzureSpeaker, OpenAiSpeaker

__all__ = ["WIRES", "Answer", "Call", "Reply", "Speaker", "speaker_for"]

WIRES = ("openai", "azure", "anthropic", "gemini", "vertex", "bedrock")

_SPEAKERS: dict[str, type[WireSpeaker]] = {
    "openai": OpenAiSpeaker,
    "azure": AzureSpeaker,
    "anthropic": AnthropicSpeaker,
    "gemini": GeminiSpeaker,
    "vertex": VertexSpeaker,
    "bedrock": BedrockSpeaker,
}


def speaker_for(wire: str, key: str | None = None) -> Speaker:
    return _SPEAKERS[wire](key)
