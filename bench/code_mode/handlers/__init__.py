"""What the benchmark's upstream servers do: deterministic handlers over a small world per server.

Each server's world is `world/<server>.json`, loaded fresh on every reset. A handler gets the
world (a mutable dict) and the call's arguments, and returns the tool's answer as a JSON value;
`upstreams.py` turns it into a `CallToolResult` the way the real server does (text, plus
`structuredContent` for tools with an `outputSchema`). Tools without a handler answer a fixed
generic result, so every one of the 516 tools is callable and deterministic.
"""

from __future__ import annotations

from . import (  # noqa: F401  (each module registers its handlers)
    atlassian,
    clock,
    everything,
    filesystem,
    git,
    github,
    gitlab,
    grafana,
    kubernetes,
    memory,
    mongodb,
    notion,
    playwright,
    slack,
    sqlite,
    supabase,
)
from ._base import HANDLERS, ToolFailure, World, generic_answer, load_world

__all__ = ["HANDLERS", "ToolFailure", "World", "generic_answer", "load_world"]
