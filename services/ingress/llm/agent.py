"""Agent mode's pure steps (docs/llm.md, "Agent mode").

Which proposed calls Bastion may run on its own, the ids a conversation already holds, the assistant
message a round that ran continues with, and the `bastion` summary an answer carries. The loop that uses
them is `endpoint.LlmEndpoint._agent_loop`."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from libs.common.contracts.llm import LlmOutcome
from libs.common.contracts.llm_config import AgentMode

__all__ = ["agent_summary", "assistant_message", "auto_executable", "call_ids", "call_name", "stop_reason"]


def agent_summary(
    transcript: list[dict[str, Any]], depth: int, stopped: str | None, pending: list[dict[str, Any]]
) -> dict[str, Any]:
    """The `bastion` field of an agent-mode answer.

    What Bastion added to the conversation (append it before the final message), how many model rounds it
    made, and why it stopped if not by the model."""
    return {"transcript": transcript, "depth": depth, "stopped": stopped, "pending": pending}


def stop_reason(depth: int, agent: AgentMode, auto: list[dict[str, Any]]) -> str:
    return "max_depth" if auto and depth == agent.max_depth else "pending_tool_calls"


def assistant_message(outcome: LlmOutcome, calls: list[dict[str, Any]], *, with_text: bool) -> dict[str, Any]:
    """The assistant message of a round whose `calls` Bastion ran, as the conversation continues with it."""
    if outcome.response is not None:
        choices = outcome.response.get("choices") or [{}]
        message = dict(choices[0].get("message") or {})
    else:
        message = {"role": "assistant", "content": outcome.content or None}
    message["role"] = "assistant"
    if not with_text:
        message["content"] = None
    message["tool_calls"] = calls
    return message


def call_ids(messages: list[Any]) -> set[str]:
    """The tool-call ids the application's conversation already holds."""
    return {
        call["id"]
        for message in messages
        if isinstance(message, dict) and isinstance(message.get("tool_calls"), list)
        for call in message["tool_calls"]
        if isinstance(call, dict) and isinstance(call.get("id"), str)
    }


def auto_executable(agent: AgentMode, name: str, injected: set[str]) -> bool:
    """Bastion runs a call itself only for an MCP tool the key was given, on the key's allow-list."""
    return name in injected and any(fnmatchcase(name, pattern) for pattern in agent.tools_to_auto_execute)


def call_name(call: dict[str, Any]) -> str:
    function = call.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else ""
