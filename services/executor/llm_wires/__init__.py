"""Wire adapters: a provider's own API behind Bastion's internal format, OpenAI chat completions.

`wire_for` picks the adapter by `ProviderConfig.kind`; each module's docstring says what it translates.
"""

from __future__ import annotations

from collections.abc import Callable

from libs.common.contracts.llm_config import ProviderConfig

from .anthropic import AnthropicWire
from .azure import AzureWire
from .base import Decoder, Outgoing, Wire, WireFailure
from .bedrock import BedrockWire
from .gemini import GeminiWire
from .openai import OpenAiWire, usage_of
from .vertex import VertexWire

__all__ = ["Decoder", "Outgoing", "Wire", "WireFailure", "usage_of", "wire_for"]

_WIRES: dict[str, Callable[[ProviderConfig, str | None], Wire]] = {
    "openai": OpenAiWire,
    "azure": AzureWire,
    "anthropic": AnthropicWire,
    "gemini": GeminiWire,
    "vertex": VertexWire,
    "bedrock": BedrockWire,
}


def wire_for(config: ProviderConfig, credential: str | None) -> Wire:
    return _WIRES[config.kind](config, credential)
