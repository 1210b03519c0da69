"""The token bill of one agent transcript: what the model reads as input on every turn.

A turn is one model request. Its input is the system prompt, the tool definitions, the task, and
every earlier tool call (as the model wrote it) and tool result (as the tools answered). A
transcript with n tool calls has n + 1 turns: after the last result the model answers. Calls are
counted as Anthropic `tool_use` blocks, results as their text, definitions per `bench/tokens.py`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tokens import count, count_json

__all__ = ["SYSTEM_PROMPT", "Step", "Transcript"]

SYSTEM_PROMPT = (
    "You are an operations assistant with access to the company's tools. Use them to complete the "
    "user's task, then reply with the result."
)


@dataclass
class Step:
    tool: str
    arguments: dict[str, Any]
    output: str
    error: bool = False


@dataclass
class Transcript:
    definitions_tokens: int
    """Tokens of the tool definitions sent with every request (`tokens.definitions_tokens`)."""
    task: str
    steps: list[Step] = field(default_factory=list)

    def add(self, tool: str, arguments: dict[str, Any], output: str, error: bool = False) -> Step:
        step = Step(tool, arguments, output, error)
        self.steps.append(step)
        return step

    def fixed_tokens(self) -> int:
        """Paid on every turn: system prompt, tool definitions, the task."""
        return count(SYSTEM_PROMPT) + self.definitions_tokens + count(self.task)

    def turn_inputs(self) -> list[int]:
        fixed, history, turns = self.fixed_tokens(), 0, []
        for step in self.steps:
            turns.append(fixed + history)
            history += count_json({"type": "tool_use", "name": step.tool, "input": step.arguments})
            history += count(step.output)
        turns.append(fixed + history)  # the final answer, after reading the last result
        return turns

    def input_tokens(self) -> int:
        return sum(self.turn_inputs())

    def definition_tokens(self) -> int:
        """The part of `input_tokens` spent on tool definitions (sent again with every turn)."""
        return self.definitions_tokens * (len(self.steps) + 1)
