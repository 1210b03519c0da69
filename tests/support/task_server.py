"""An upstream that answers with tasks (MCP 2025-11-25, experimental): a `tools/call` that carries
`params.task` gets a `CreateTaskResult`, and `tasks/get`, `tasks/result`, `tasks/list`,
`tasks/cancel` serve it. Written with the official SDK's low-level `Server`; run it with
`protocol: legacy` (the tasks of this revision are handshake-era).

A job finishes only when `release` is called with its name, so a test decides when, never a
clock; released with the text `fail`, its task fails. Like real servers, its errors and messages
about a task name the task by its own id (cancelling a finished task is the spec's -32602 "task
<id> is already completed"), which the gateway must never hand an agent.

`report` takes a task or not (`taskSupport: optional`); `batch` must be one (`required`); `slow`
takes none (the gateway may host it as a task of its own).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

RELATED_TASK = "io.modelcontextprotocol/related-task"

_jobs: dict[str, asyncio.Event] = {}
_texts: dict[str, str] = {}
_tasks: dict[str, dict[str, Any]] = {}
_results: dict[str, dict[str, Any]] = {}
_done: dict[str, asyncio.Event] = {}
_runners: dict[str, asyncio.Task[None]] = {}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _job(name: str) -> asyncio.Event:
    return _jobs.setdefault(name, asyncio.Event())


TOOLS = [
    types.Tool(
        name="report",
        description="Writes the report `job` once `release` lets it; a task when the caller asks for one.",
        input_schema={"type": "object", "properties": {"job": {"type": "string"}}, "required": ["job"]},
        execution=types.ToolExecution(task_support="optional"),
    ),
    types.Tool(
        name="batch",
        description="Runs the batch `job` once `release` lets it; always a task.",
        input_schema={"type": "object", "properties": {"job": {"type": "string"}}, "required": ["job"]},
        execution=types.ToolExecution(task_support="required"),
    ),
    types.Tool(
        name="slow",
        description="Answers once `release` lets the job `job` finish; never a task of its own.",
        input_schema={"type": "object", "properties": {"job": {"type": "string"}}, "required": ["job"]},
    ),
    types.Tool(
        name="release",
        description="Lets the job `job` finish with `text`.",
        input_schema={
            "type": "object",
            "properties": {"job": {"type": "string"}, "text": {"type": "string"}},
            "required": ["job", "text"],
        },
    ),
    types.Tool(
        name="cancelled",
        description="Names the jobs whose task was cancelled.",
        input_schema={"type": "object", "properties": {}},
    ),
]

_cancelled_jobs: list[str] = []
_LEAKED = "the key is AKIAIOSFODNN7EXAMPLE for prod"


async def list_tools(_ctx: Any, _params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


def _text(text: str, **extra: Any) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], **extra)


async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> Any:
    args = params.arguments or {}
    if params.name == "release":
        # "leak": the job's text is a credential the server holds (a fake AWS key id), as a hostile or
        # careless upstream would answer; the agent never sent it, so no argument check can see it
        _texts[args["job"]] = _LEAKED if args["text"] == "leak" else args["text"]
        _job(args["job"]).set()
        return _text(f"released {args['job']}")
    if params.name == "cancelled":
        return _text(",".join(_cancelled_jobs))
    job = str(args.get("job", ""))
    if params.name == "batch":
        raise ValueError("batch runs only as a task")  # the spec's -32601 would do as well
    try:
        await _job(job).wait()
    except BaseException:  # the client cancelled the call (notifications/cancelled)
        _cancelled_jobs.append(job)
        raise
    return _text(f"{params.name} {job}: {_texts[job]}")


async def tasks_first(ctx: Any, call_next: Any) -> Any:
    """A `tools/call` with `params.task` answers a `CreateTaskResult`, which the SDK's own
    `tools/call` handler may not return (it checks the result against `CallToolResult`)."""
    params = ctx.params if isinstance(ctx.params, dict) else {}
    if ctx.method == "tools/call" and isinstance(params.get("task"), dict):
        job = str((params.get("arguments") or {}).get("job", ""))
        return _create_task(str(params.get("name")), job, params["task"].get("ttl"))
    return await call_next(ctx)


def _create_task(tool: str, job: str, ttl: int | None) -> dict[str, Any]:
    task_id = str(uuid.uuid4())
    now = _now()
    _tasks[task_id] = {
        "taskId": task_id,
        "status": "working",
        "createdAt": now,
        "lastUpdatedAt": now,
        "ttl": ttl,
        "pollInterval": 50,
    }
    _done[task_id] = asyncio.Event()
    _runners[task_id] = asyncio.get_running_loop().create_task(_run(task_id, tool, job))
    return {"task": dict(_tasks[task_id])}


async def _run(task_id: str, tool: str, job: str) -> None:
    try:
        await _job(job).wait()
    except asyncio.CancelledError:
        _cancelled_jobs.append(job)
        _finish(task_id, "cancelled", None)
        raise
    if _texts[job] == "fail":
        said = f"task {task_id} failed: the {tool} job {job} could not finish"
        _finish(task_id, "failed", {"content": [{"type": "text", "text": said}], "isError": True}, message=said)
        return
    text = f"{tool} {job}: {_texts[job]}"
    # the status message is the upstream's words too: a careless one repeats the result there
    _finish(task_id, "completed", {"content": [{"type": "text", "text": text}]}, message=text)


def _finish(task_id: str, status: str, result: dict[str, Any] | None, message: str | None = None) -> None:
    _tasks[task_id] |= {"status": status, "lastUpdatedAt": _now()}
    if message is not None:
        _tasks[task_id]["statusMessage"] = message
    if result is not None:
        _results[task_id] = result
    _done[task_id].set()


def _task(task_id: str) -> dict[str, Any]:
    if task_id not in _tasks:
        raise ValueError(f"unknown task {task_id}")
    return _tasks[task_id]


async def get_task(_ctx: Any, params: types.GetTaskRequestParams) -> types.GetTaskResult:
    return types.GetTaskResult.model_validate(_task(params.task_id))


async def task_result(_ctx: Any, params: types.GetTaskPayloadRequestParams) -> dict[str, Any]:
    _task(params.task_id)
    await _done[params.task_id].wait()
    result = _results.get(params.task_id, {"content": [], "isError": True})
    meta = {RELATED_TASK: {"taskId": params.task_id}}
    return {**result, "_meta": meta}  # the payload is the tool's result: its fields, not the model's


async def list_tasks(_ctx: Any, _params: Any) -> types.ListTasksResult:
    return types.ListTasksResult.model_validate({"tasks": list(_tasks.values())})


async def cancel_task(_ctx: Any, params: types.CancelTaskRequestParams) -> types.CancelTaskResult:
    task = _task(params.task_id)
    if task["status"] in ("completed", "failed", "cancelled"):
        message = f"task {params.task_id} is already {task['status']}: a finished task cannot be cancelled"
        raise MCPError(types.INVALID_PARAMS, message, {"taskId": params.task_id})
    if task["status"] == "working":
        _runners[params.task_id].cancel()
        await _done[params.task_id].wait()
    return types.CancelTaskResult.model_validate(_tasks[params.task_id])


server: Server[Any] = Server("tasks", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool)
server.middleware.append(tasks_first)
server.add_request_handler("tasks/get", types.GetTaskRequestParams, get_task)
server.add_request_handler("tasks/result", types.GetTaskPayloadRequestParams, task_result)
server.add_request_handler("tasks/list", types.PaginatedRequestParams, list_tasks)
server.add_request_handler("tasks/cancel", types.CancelTaskRequestParams, cancel_task)


async def main() -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    try:
        anyio.run(main)
    except KeyboardInterrupt:
        sys.exit(0)
