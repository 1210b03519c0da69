"""MCP tasks (2025-11-25, experimental) toward an upstream.

A `tools/call` carrying `params.task`, answered by a `CreateTaskResult`, and `tasks/get`, `tasks/result`,
`tasks/cancel` about it.

The SDK's `ClientSession.send_request` checks every result against the method's result type for
the session's revision, and its `tools/call` type has no `CreateTaskResult` (nor do its task
methods route through `REQUEST_TYPES`): these go out on the session's dispatcher as raw requests,
stamped as `send_request` stamps them, their results relayed as wire dicts. Ingress reads them
(`services/ingress/tasks/task_router.py`); the executor only carries them.
"""

from __future__ import annotations

from typing import Any, Final

from mcp.client.session import ClientSession

__all__ = ["TASK_METHODS", "is_task_call", "send_raw"]

TASK_METHODS: Final = frozenset(("tasks/get", "tasks/result", "tasks/cancel", "tasks/list"))
"""Task methods ingress routes to the upstream that holds the task."""


def is_task_call(params: dict[str, Any]) -> bool:
    """A `tools/call` the agent (or the gateway for it) asked to run as an upstream task."""
    return isinstance(params.get("task"), dict)


async def send_raw(session: ClientSession, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Send `method` on the session as is and return the result as the upstream sent it."""
    data: dict[str, Any] = {"method": method, "params": params}
    opts: dict[str, Any] = {}
    session._stamp(data, opts)  # type: ignore[arg-type]  # the era's `_meta` and headers, as send_request adds
    return await session._dispatcher.send_raw_request(method, data.get("params"), opts)  # type: ignore[arg-type]
