"""What the executor asks of a live session: a `tools/call`, and the tool-change stream.

Stateless functions over an SDK `ClientSession`, so `upstream.py` keeps only the connection's
life cycle and the breaker bookkeeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.subscriptions import listen
from mcp.shared.exceptions import MCPError
from mcp_types import HEADER_MISMATCH
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import TypeAdapter

from bastion_common.errors import ErrorKind
from bastion_common.messages import CallOutcome, ToolCall

from .outcomes import describe_exception, error_from_exception, refusal

__all__ = ["announces_tool_changes", "listen_for_changes", "ping", "send_tool_call"]

log = logging.getLogger("bastion_executor.upstream")

_RESULT = TypeAdapter(dict[str, Any])
"""`tools/call` results stay wire dicts: ingress passes them on untouched, so no models are built."""


async def send_tool_call(
    session: ClientSession,
    call: ToolCall,
    deadline: float,
    budget: float,
    *,
    server: str,
    on_stale: Callable[[], None],
) -> CallOutcome:
    """Send one `tools/call` and map what happens to a `CallOutcome`. On the deadline the SDK
    abandons the request and sends the server `notifications/cancelled` for it."""
    request = types.CallToolRequest(
        params=types.CallToolRequestParams(name=call.tool, arguments=call.arguments, _meta=call.meta)
    )
    started = time.perf_counter()
    try:
        async with asyncio.timeout_at(deadline):
            result = await session.send_request(request, _RESULT)
    except Exception as exc:
        if isinstance(exc, MCPError) and exc.code == HEADER_MISMATCH:
            on_stale()  # 2026-07-28: our copy of the tool's schema is stale
        error = error_from_exception(exc, server=server, timeout=budget)
        if error.kind is ErrorKind.INTERNAL:
            log.exception("upstream %s: tools/call %r failed unexpectedly", server, call.tool)
        return CallOutcome(id=call.id, error=error, decided_by="executor", upstream_ms=_ms(started))
    if result.get("resultType") == "input_required":
        return refusal(
            call,
            ErrorKind.UPSTREAM_ERROR,
            f"tool {call.tool!r} asked for user input mid-call, which Bastion does not relay yet",
        )
    return CallOutcome.model_construct(id=call.id, result=result, decided_by="executor", upstream_ms=_ms(started))


async def listen_for_changes(session: ClientSession, server: str, on_change: Callable[[], None]) -> None:
    """2026-07-28 servers announce tool changes on a `subscriptions/listen` stream only."""
    try:
        async with listen(session, tools_list_changed=True) as subscription:
            async for _event in subscription:
                on_change()
    except Exception as exc:
        log.debug("upstream %s: tool-change subscription ended (%s)", server, describe_exception(exc))


async def ping(session: ClientSession, within: float) -> str | None:
    """None when the server answered within `within` seconds, else why not. An error answer counts as
    alive: 2026-07-28 servers may not implement `ping`, but answering proves the session works."""
    try:
        with anyio.fail_after(within):
            await session.send_ping()
    except MCPError:
        return None
    except Exception as exc:
        return describe_exception(exc)
    return None


def announces_tool_changes(session: ClientSession) -> bool:
    caps = session.server_capabilities
    return (
        session.protocol_version in MODERN_PROTOCOL_VERSIONS
        and caps is not None
        and caps.tools is not None
        and bool(caps.tools.list_changed)
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
