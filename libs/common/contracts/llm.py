"""The LLM side's contracts: provider configuration, the NATS messages of a chat completion, prices.

A chat completion travels like a tool call: ingress -> policy (key, budget) -> executor (the
provider call, behind a breaker per provider). Bodies stay in OpenAI's wire format (plain dicts):
the executor sends the request body it is given through the provider's wire (translated to the
provider's own API where its `kind` is not `openai`) and streams the answer's chunks back, as OpenAI
chunks, as they come, as `StreamEvent`s with method `LLM_CHUNK` on the request's stream subject.
"""

from __future__ import annotations

import math
import time
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from libs.common.contracts.llm_config import Deployment, ModelPrice, ProviderConfig, RoutingStrategy
from libs.common.contracts.messages import Caller, GatewayError, new_id
from libs.common.contracts.messages_base import BusMessage

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "LLM_CHUNK",
    "MAX_CANDIDATES",
    "THOUGHT_SIGNATURE",
    "LlmAttempt",
    "LlmOutcome",
    "LlmRequest",
    "ProviderRecord",
    "RoutedDeployment",
    "Usage",
    "cost_usd",
    "max_cost_usd",
]

LLM_CHUNK: Final = "llm/chunk"
"""`StreamEvent.method` of one streamed chat-completion chunk (params: the chunk, in OpenAI's shape)."""
DEFAULT_MAX_TOKENS: Final = 4096
"""Completion tokens a request that sets no `max_tokens` is assumed to use at most, for the budget check."""
MAX_CANDIDATES: Final = 64
"""Deployments one request may be tried on at most (its route's and its fallbacks')."""
THOUGHT_SIGNATURE: Final = "__thought__"
"""Separates a tool call's id from the Gemini `thoughtSignature` it carries (`<id>__thought__<signature>`).

Gemini wants a function call's signature back with the call, and chat completions has no field for it:
the executor's Gemini wire writes it into the id, and the Gemini front reads it out and back in."""
_CHARS_PER_TOKEN: Final = 3
"""A deliberately pessimistic characters-per-token ratio: the prompt estimate must not undercut the real count."""


class ProviderRecord(BusMessage):
    """KV `bastion_llm` value: one provider (its `api_key` sealed when a secrets key is set)."""

    name: str
    config: ProviderConfig
    source: str | None = None


class Usage(BaseModel):
    """Tokens of one completion, in OpenAI's names whatever the provider's wire called them."""

    model_config = ConfigDict(extra="ignore")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    """Of `prompt_tokens`, those the provider read from its prompt cache (priced as cached input)."""
    reasoning_tokens: int = 0
    """Of `completion_tokens`, those the provider reports as reasoning."""


class RoutedDeployment(Deployment):
    """A deployment one request may be sent to, with what the executor needs to order and price it."""

    route: str
    """The model name it serves: the one asked for, or a fallback."""
    strategy: RoutingStrategy = "priority"
    cooldown: float = 30.0
    granted: bool = False
    """Set by policy alone: whether the caller may use `route`. The executor never sends a request
    to a deployment policy did not grant, so a fallback into a model the key may not use is skipped."""


class LlmAttempt(BaseModel):
    """One deployment a request was tried on, or skipped, as the audit row records it."""

    model_config = ConfigDict(extra="ignore")
    provider: str
    model: str
    route: str
    outcome: str
    """`ok`, the error kind of a failure (`rate_limited`, `upstream_unavailable`, ...), or why it was
    skipped: `not_granted`, `cooling_down`, `circuit_open`, `rpm_limit`, `tpm_limit`."""
    ms: float = 0.0

    def line(self) -> str:
        """The audit column's form: `provider/model (route): outcome in ms`."""
        return f"{self.provider}/{self.model} ({self.route}): {self.outcome} in {self.ms:.1f} ms"


class LlmRequest(BusMessage):
    """ingress -> policy -> executor: one chat completion."""

    id: str = Field(default_factory=new_id)
    trace_id: str | None = None
    caller: Caller
    provider: str
    model: str
    body: dict[str, Any]
    """The OpenAI request body to send (tools already injected); `stream` says how to answer."""
    max_cost_usd: float = 0.0
    """What the request may cost at most (prompt estimate + `max_tokens`): policy refuses it when a
    budget cannot cover this much, and settles the actual cost afterwards."""
    timeout: float
    sent_at: float = Field(default_factory=time.time)
    deadline: float = 0.0
    stream: str | None = None
    """Subject the executor publishes chunks to when the body asks for a stream."""
    deployments: list[RoutedDeployment] = Field(default_factory=list, max_length=MAX_CANDIDATES)
    """A routed model's deployments, its own then its fallbacks' (docs/llm-routing.md); empty: the
    model a provider lists, sent to `provider` alone."""

    @model_validator(mode="after")
    def _default_deadline(self) -> LlmRequest:
        if not self.deadline:
            self.deadline = self.sent_at + self.timeout
        return self


class LlmOutcome(BusMessage):
    """executor or policy -> ingress: the completion (non-streaming), or the streamed one's summary."""

    id: str
    response: dict[str, Any] | None = None
    """Non-streaming: the provider's answer as a `ChatCompletion` (as sent, or translated from its wire)."""
    error: GatewayError | None = None
    decided_by: str = "executor"
    usage: Usage | None = None
    cost_usd: float = 0.0
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    """Streaming: the tool calls the deltas assembled to (OpenAI `tool_calls` entries)."""
    content: str = ""
    """Streaming: the assistant text the deltas assembled to."""
    upstream_ms: float | None = None
    events: int = 0
    """Chunks published to the stream before this outcome (ingress forwards them all first)."""
    started_streaming: bool = False
    attempts: list[LlmAttempt] = Field(default_factory=list, max_length=MAX_CANDIDATES)
    """A routed request's deployments in the order tried (or skipped), the last one the answer's."""


def cost_usd(price: ModelPrice | None, usage: Usage) -> float:
    """Input, cached input, output and reasoning tokens.

    Each at its price (cached and reasoning tokens are counted within prompt and completion tokens;
    clamped, so a provider's odd numbers never make a cost negative)."""
    if price is None:
        return 0.0
    cached = min(max(usage.cached_tokens, 0), usage.prompt_tokens)
    reasoning = min(max(usage.reasoning_tokens, 0), usage.completion_tokens)
    cached_price = price.input if price.cached_input is None else price.cached_input
    reasoning_price = price.output if price.reasoning is None else price.reasoning
    micro = (
        (usage.prompt_tokens - cached) * price.input
        + cached * cached_price
        + (usage.completion_tokens - reasoning) * price.output
        + reasoning * reasoning_price
    )
    return micro / 1_000_000


def max_cost_usd(price: ModelPrice | list[ModelPrice | None] | None, body: dict[str, Any], prompt_bytes: int) -> float:
    """The most a request can cost.

    A pessimistic prompt estimate plus every completion token it allows, at the dearest of the prices it
    may be served at (a routed model's deployments)."""
    prices = price if isinstance(price, list) else [price]
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    completion = limit if isinstance(limit, int) and limit > 0 else DEFAULT_MAX_TOKENS
    estimate = Usage(prompt_tokens=math.ceil(prompt_bytes / _CHARS_PER_TOKEN), completion_tokens=completion)
    reasoned = estimate.model_copy(update={"reasoning_tokens": completion})  # where reasoning is dearer
    return max((max(cost_usd(p, estimate), cost_usd(p, reasoned)) for p in prices), default=0.0)
