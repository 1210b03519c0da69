"""Code Mode's messages (`messages`): ingress asks codemode to run one meta-tool, and codemode answers.

The meta-tools themselves are in `codemode`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from libs.common.contracts.messages_base import BusMessage, Caller, GatewayError, new_id

__all__ = [
    "CodeModeAnswer",
    "CodeModeCall",
]


class CodeModeCall(BusMessage):
    """ingress -> codemode: one call of a Code Mode meta-tool (`libs.common.contracts.codemode.META_TOOLS`)."""

    id: str = Field(default_factory=new_id)
    trace_id: str | None = None
    caller: Caller
    tool: str
    """The meta-tool's name."""
    arguments: dict[str, Any] = Field(default_factory=dict)
    include_servers: list[str] | None = None
    include_tools: list[str] | None = None
    parent_id: str
    """`event_id` of the audit event ingress writes for this meta-tool call: the parent of every tool
    call the run makes."""
    timeout: float
    """Seconds ingress waits; each tool call of a run gets at most what is left of it."""
    per_user: list[str] | None = None
    """Per-user servers the caller is listed from their own listing (`own_tools`) instead of the shared
    catalog's; None when no server is per user (the shared catalog is the caller's, as for every key)."""
    own_tools: list[tuple[str, dict[str, Any]]] = Field(default_factory=list, max_length=10_000)
    """(server, the upstream's `Tool`) of each `per_user` server's tool the caller is listed."""


class CodeModeAnswer(BusMessage):
    """codemode -> ingress: the meta-tool's `CallToolResult` (wire JSON), or why there is none."""

    id: str
    result: dict[str, Any] | None = None
    error: GatewayError | None = None
    calls: int = 0
    """Tool calls the run made (each audited on its own with `parent_id`)."""
    authorize_urls: dict[str, str] = Field(default_factory=dict)
    """Server -> the caller's link to authorize it (per-user servers the run was refused by). Kept
    out of `result`, which the run's audit row records: ingress adds them to the agent's answer only."""
