"""What one MCP request carries through its handler.

Who asks, in which protocol revision, and how it may be answered (`RequestContext`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from libs.common.contracts.messages import Caller
from services.ingress.sessions.streams import Emit

__all__ = ["RequestContext"]


@dataclass(slots=True)
class RequestContext:
    caller: Caller
    version: str
    request_id: Any
    started: float = field(default_factory=time.perf_counter)
    request_bytes: int = 0
    trace_id: str | None = None
    include_servers: tuple[str, ...] | None = None
    """`X-Bastion-Include-Servers`, parsed: the request narrows what its key may use."""
    include_tools: tuple[str, ...] | None = None
    timeout: float | None = None
    """`X-Bastion-Timeout` in seconds: an agent may ask for less than the gateway allows, never more."""
    session: str | None = None
    """`session_key` of the agent's `Mcp-Session-Id` (handshake era), for state kept across requests."""
    client: tuple[str, ...] = ()
    """What the agent can be asked for mid-call: "sampling", "elicitation", "roots" (its capabilities)."""
    emit: Emit | None = None
    """Sends one JSON-RPC message on this request's SSE response; None when the agent accepts only JSON."""
    call_id: str | None = None
    """Id of the call or routed request this request became, once sent (cancellation needs it)."""
    code_mode: str | None = None
    """`X-Bastion-Code-Mode` as sent (`on` / `off`): overrides the key's Code Mode setting."""
    discovery: str | None = None
    """`X-Bastion-Discovery` as sent (`on` / `off`): overrides the key's discovery-mode setting."""
    audit_id: str | None = None
    """Event id of the audit event this request owes, when the journal assigned it in advance."""
