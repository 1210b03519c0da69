"""MCP tasks in the two forms agents speak, and the upstream's form read back into a record.

- 2025-11-25 (experimental): the agent asks with `params.task` (`{ttl}`), gets `{task: Task}`, polls
  `tasks/get` (a `Task`: `ttl`, `pollInterval`), fetches `tasks/result`, may `tasks/list`, `tasks/cancel`
  (answered with the `Task`).
- 2026-07-28 extension `io.modelcontextprotocol/tasks`: the agent declares the extension in its
  request's client capabilities and gets `resultType: "task"` (`ttlMs`, `pollIntervalMs`); `tasks/get`
  inlines `result` or `error` once terminal; `tasks/cancel` and `tasks/update` answer an empty ack.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from mcp_types import CLIENT_CAPABILITIES_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from libs.common.contracts.gateway_tasks import TASKS_EXTENSION, TaskRecord

__all__ = ["Form", "agent_form", "created", "detailed", "listed", "read_upstream_task", "requested_ttl"]

Form = Literal["legacy", "extension"]
"""How an agent speaks tasks: 2025-11-25's `params.task`, or the 2026-07-28 extension."""

_STATUSES = frozenset(("working", "input_required", "completed", "failed", "cancelled"))


def agent_form(version: str, params: dict[str, Any]) -> Form | None:
    """How the agent of this request takes a task, or None when it does not (it waits for the result)."""
    if version in MODERN_PROTOCOL_VERSIONS:
        meta = params.get("_meta")
        capabilities = meta.get(CLIENT_CAPABILITIES_META_KEY) if isinstance(meta, dict) else None
        extensions = capabilities.get("extensions") if isinstance(capabilities, dict) else None
        return "extension" if isinstance(extensions, dict) and TASKS_EXTENSION in extensions else None
    return "legacy" if isinstance(params.get("task"), dict) else None


def requested_ttl(params: dict[str, Any]) -> object:
    task = params.get("task")
    return task.get("ttl") if isinstance(task, dict) else None


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def _task(record: TaskRecord, form: Form) -> dict[str, Any]:
    task: dict[str, Any] = {
        "taskId": record.task_id,
        "status": record.status,
        "createdAt": _iso(record.created_at),
        "lastUpdatedAt": _iso(record.updated_at),
    }
    if record.status_message:
        task["statusMessage"] = record.status_message
    if form == "legacy":
        task |= {"ttl": record.ttl_ms, "pollInterval": record.poll_interval_ms}
    else:
        task |= {"ttlMs": record.ttl_ms, "pollIntervalMs": record.poll_interval_ms}
    return task


def created(record: TaskRecord, form: Form) -> dict[str, Any]:
    """The `CreateTaskResult` answering the call that made the task."""
    if form == "legacy":
        return {"task": _task(record, form)}
    return {"resultType": "task", **_task(record, form)}


def detailed(record: TaskRecord, form: Form, result: dict[str, Any] | None, error: dict[str, Any] | None) -> Any:
    """`tasks/get`'s answer (and 2025-11-25 `tasks/cancel`'s): the task.

    The extension's form inlines the result or error of a finished task."""
    task = _task(record, form)
    if form == "extension":
        if record.status == "completed" and result is not None:
            task["result"] = result
        elif record.status == "failed":
            task["error"] = error or {"code": -32603, "message": record.status_message or "the task failed"}
    return task


def listed(records: list[TaskRecord]) -> dict[str, Any]:
    """2025-11-25 `tasks/list`: the caller's own tasks, nobody else's."""
    return {"tasks": [_task(record, "legacy") for record in records]}


def read_upstream_task(result: Any) -> dict[str, Any] | None:
    """The `Task` inside an upstream's `CreateTaskResult` (`{task: ...}`), `tasks/get` or `tasks/cancel` answer.

    (The task itself), or None when `result` is none of those."""
    if not isinstance(result, dict):
        return None
    inner = result.get("task")
    task: dict[str, Any] = inner if isinstance(inner, dict) else result
    if not isinstance(task.get("taskId"), str) or task.get("status") not in _STATUSES:
        return None
    return task
